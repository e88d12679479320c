"""The rules' facts (since when each condition holds), per cabinet, as JSON text; kept
apart from the alarms, which no transaction ties them to."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from sqlalchemy import select

from aedfleet.db.base import DatabaseStore
from alerting.errors import AlarmStoreError
from alerting.store_rows import chunks, insert_into
from alerting.tables import rule_facts


class FactStore(DatabaseStore):
    """Reached as ``AlarmStore.facts``: it shares the alarm store's engine and is closed
    with it, never on its own."""

    _error_type = AlarmStoreError

    def load(self, cabinet_ids: Iterable[str]) -> dict[str, str]:
        """The stored facts text of each cabinet that has any."""
        found: dict[str, str] = {}
        with self._reading("load the rule facts") as connection:
            for chunk in chunks(sorted(set(cabinet_ids))):
                rows = connection.execute(
                    select(rule_facts).where(rule_facts.c.cabinet_id.in_(chunk))
                )
                found.update({row.cabinet_id: row.facts for row in rows})
        return found

    def save(self, facts: Mapping[str, str]) -> None:
        """Insert or replace the facts text of each cabinet given, in one transaction."""
        if not facts:
            return
        with self._writing(f"save the rule facts of {len(facts)} cabinets") as connection:
            insert = insert_into(connection, rule_facts)
            connection.execute(
                insert.on_conflict_do_update(
                    index_elements=["cabinet_id"], set_={"facts": insert.excluded.facts}
                ),
                [
                    {"cabinet_id": cabinet_id, "facts": text}
                    for cabinet_id, text in sorted(facts.items())
                ],
            )
