"""Silences (maintenance windows) in the state store's database: no transaction ties
them to alarms, so they are a store of their own on the alarm store's engine."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update

from aedfleet.db.base import DatabaseStore
from alerting.errors import AlarmStoreError
from alerting.model import AlarmType, Silence
from alerting.store_rows import is_postgres, model_of
from alerting.tables import silences


class SilenceStore(DatabaseStore):
    """Reached as ``AlarmStore.silences``: it shares the alarm store's engine and is closed
    with it, never on its own."""

    _error_type = AlarmStoreError

    def add(
        self,
        *,
        starts_at: datetime,
        ends_at: datetime,
        reason: str,
        created_by: str,
        cabinet_id: str | None = None,
        region_code: str | None = None,
        alarm_type: AlarmType | None = None,
    ) -> Silence:
        """Store a maintenance window (validate requests with :mod:`alerting.silences`)."""
        if cabinet_id is None and region_code is None and alarm_type is None:
            raise AlarmStoreError("a silence must name a cabinet, a region or an alarm type")
        if ends_at <= starts_at:
            raise AlarmStoreError(
                f"a silence must end after it starts ({starts_at.isoformat()} to"
                f" {ends_at.isoformat()})"
            )
        values: dict[str, object] = {
            "cabinet_id": cabinet_id,
            "region_code": region_code,
            "alarm_type": None if alarm_type is None else alarm_type.value,
            "starts_at": starts_at,
            "ends_at": ends_at,
            "reason": reason,
            "created_by": created_by,
        }
        with self._writing("add a silence") as connection:
            silence_id = connection.execute(
                silences.insert().returning(silences.c.silence_id), values
            ).scalar_one()
        return model_of(Silence, values | {"silence_id": silence_id})

    def all(self, active_at: datetime | None = None) -> list[Silence]:
        """Every silence, or those covering ``active_at``; by id."""
        query = select(silences).order_by(silences.c.silence_id)
        if active_at is not None:
            query = query.where(silences.c.starts_at <= active_at, silences.c.ends_at > active_at)
        with self._reading("read the silences") as connection:
            return [model_of(Silence, row._asdict()) for row in connection.execute(query)]

    def end(self, silence_id: int, now: datetime) -> Silence:
        """End a silence at ``now`` (one not started yet is ended before it begins)."""
        with self._writing(f"end silence {silence_id}") as connection:
            query = select(silences).where(silences.c.silence_id == silence_id)
            if is_postgres(connection):
                query = query.with_for_update()
            row = connection.execute(query).first()
            if row is None:
                raise AlarmStoreError(f"no silence has the id {silence_id}")
            silence = model_of(Silence, row._asdict())
            ends_at = max(silence.starts_at, min(silence.ends_at, now))
            if ends_at != silence.ends_at:
                connection.execute(
                    update(silences)
                    .where(silences.c.silence_id == silence_id)
                    .values(ends_at=ends_at)
                )
        return silence.model_copy(update={"ends_at": ends_at})
