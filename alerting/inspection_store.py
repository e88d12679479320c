"""Inspections by captains, and the expiry dates they read into the registry's cabinet
(one transaction); no transaction ties them to alarms."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime

from sqlalchemy import func, select, update

from aedfleet.db.base import DatabaseStore
from aedfleet.db.tables import cabinets
from alerting.errors import AlarmStoreError
from alerting.model import Inspection, InspectionResult
from alerting.store_rows import chunks, columns_of, is_postgres
from alerting.tables import inspections


class InspectionStore(DatabaseStore):
    """Reached as ``AlarmStore.inspections``: it shares the alarm store's engine and is closed
    with it, never on its own."""

    _error_type = AlarmStoreError

    def record(self, inspection: Inspection) -> InspectionResult:
        """Store an inspection and, in the same transaction, the expiry dates it read in
        the registry's cabinet (when they differ from what the registry says)."""
        action = f"record an inspection of cabinet {inspection.cabinet_id!r}"
        with self._writing(action) as connection:
            query = select(cabinets.c.pads_expiry, cabinets.c.battery_expiry).where(
                cabinets.c.cabinet_id == inspection.cabinet_id
            )
            if is_postgres(connection):
                query = query.with_for_update()
            registered = connection.execute(query).first()
            if registered is None:
                raise AlarmStoreError(
                    f"cabinet {inspection.cabinet_id!r} is not in the registry: it cannot"
                    " be inspected"
                )
            changes: dict[str, date] = {
                name: read
                for name, read, stored in (
                    ("pads_expiry", inspection.pads_expiry, registered.pads_expiry),
                    ("battery_expiry", inspection.battery_expiry, registered.battery_expiry),
                )
                if read is not None and read != stored
            }
            if changes:
                connection.execute(
                    update(cabinets)
                    .where(cabinets.c.cabinet_id == inspection.cabinet_id)
                    .values(**changes)
                )
            inspection_id = connection.execute(
                inspections.insert().returning(inspections.c.inspection_id), columns_of(inspection)
            ).scalar_one()
        return InspectionResult(
            inspection_id=inspection_id,
            pads_expiry_updated="pads_expiry" in changes,
            battery_expiry_updated="battery_expiry" in changes,
        )

    def last(self, cabinet_ids: Iterable[str]) -> dict[str, datetime]:
        """When each cabinet was last inspected; cabinets never inspected are left out."""
        found: dict[str, datetime] = {}
        with self._reading("read the last inspections") as connection:
            for chunk in chunks(sorted(set(cabinet_ids))):
                rows = connection.execute(
                    select(inspections.c.cabinet_id, func.max(inspections.c.at).label("at"))
                    .where(inspections.c.cabinet_id.in_(chunk))
                    .group_by(inspections.c.cabinet_id)
                )
                found.update({row.cabinet_id: row.at for row in rows})
        return found
