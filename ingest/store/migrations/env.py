"""Alembic environment of the state store.

Run through :func:`ingest.store.migrate` (or :meth:`ingest.store.StateStore.open`), which
passes an open connection in ``config.attributes["connection"]`` inside its own
transaction. For development, ``alembic -c ingest/store/alembic.ini -x url=URL ...``
works too (``--sql`` for offline SQL).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, create_engine

from ingest.store.tables import metadata

config = context.config


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
