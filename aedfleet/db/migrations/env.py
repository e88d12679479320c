"""Alembic environment of the state store.

Run through :func:`aedfleet.db.migrate` (or :meth:`aedfleet.db.StateStore.open`), which
passes an open connection in ``config.attributes["connection"]`` inside its own
transaction. For development, ``alembic -c aedfleet/db/alembic.ini -x url=URL ...``
works too (``--sql`` for offline SQL).
"""

from __future__ import annotations

import importlib

from alembic import context
from sqlalchemy import Connection, MetaData, create_engine

config = context.config


def _metadata() -> MetaData | None:
    """The schema the chain must build, for ``--autogenerate``: every component's tables.

    The chain itself is plain DDL and imports no component; the modules that declare
    tables are named in ``alembic.ini`` (``table_modules``), so the ground layer does not
    depend on the components above it.
    """
    names = (config.get_main_option("table_modules") or "").split()
    modules = [importlib.import_module(name) for name in names]
    return modules[0].metadata if modules else None


metadata = _metadata()


def _url() -> str:
    url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option(
        "sqlalchemy.url"
    )
    if not url:
        raise RuntimeError("no database URL: pass -x url=... or set sqlalchemy.url")
    return url


def _run(connection: Connection) -> None:
    context.configure(connection=connection, target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()


def main() -> None:
    if context.is_offline_mode():
        context.configure(url=_url(), target_metadata=metadata, literal_binds=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    connection = config.attributes.get("connection")
    if isinstance(connection, Connection):
        _run(connection)
        return
    engine = create_engine(_url())
    try:
        with engine.connect() as own_connection:
            _run(own_connection)
    finally:
        engine.dispose()


main()
