"""What a dispatcher is told about a cabinet: registry particulars and readiness.

The registry (where the cabinet is, how it opens, who looks after it) changes rarely
and is held in memory (:class:`RegistryCache`, refreshed by the service), so a door
event never waits for it; the cabinet's readiness (last self-test, pads, battery,
online) is read from its twin, one indexed row, when the message is built.
:func:`build_event` turns a :class:`~dispatch.incident.Notice` and those facts into
the :class:`~aedfleet.contract.DispatchEvent` every endpoint receives (pure).

A cabinet the registry does not know is refused by default (the service's
``unregistered_cabinets`` setting): a spoofed or mistyped id must not send anyone out.
Where a site sets it to ``dispatch``, such a cabinet's message carries what its own
messages tell, and ``registered`` false.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date

from pydantic import BaseModel, ConfigDict

from aedfleet.contract import (
    DispatchAccess,
    DispatchContact,
    DispatchEvent,
    DispatchLocation,
    DispatchReadiness,
    IdempotencyKey,
)
from aedfleet.registry import Assignment, Cabinet, Person, Registry, Role
from aedfleet.twin import Twin
from dispatch.incident import Notice

_ROLE_ORDER = {role: index for index, role in enumerate(Role)}


class Particulars(BaseModel):
    """What the registry says of one cabinet."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cabinet: Cabinet
    contact: DispatchContact | None = None


def contact_of(duty: Iterable[tuple[Assignment, Person]]) -> DispatchContact | None:
    """The person to name: the captain, else the first backup by rank, else a coordinator."""
    ranked = sorted(duty, key=lambda pair: (_ROLE_ORDER[pair[0].role], pair[0].rank))
    if not ranked:
        return None
    assignment, person = ranked[0]
    return DispatchContact(name=person.name, phone=person.phone, role=assignment.role.value)


def particulars_by_cabinet(registry: Registry) -> dict[str, Particulars]:
    people = {person.person_id: person for person in registry.people}
    duty: dict[str, list[tuple[Assignment, Person]]] = {}
    for assignment in registry.assignments:
        person = people.get(assignment.person_id)
        if person is not None:
            duty.setdefault(assignment.cabinet_id, []).append((assignment, person))
    return {
        cabinet.cabinet_id: Particulars(
            cabinet=cabinet, contact=contact_of(duty.get(cabinet.cabinet_id, ()))
        )
        for cabinet in registry.cabinets
    }


class RegistryCache:
    """The registry's particulars by cabinet, replaced whole on each refresh."""

    def __init__(self) -> None:
        self._by_cabinet: Mapping[str, Particulars] = {}

    def replace(self, registry: Registry) -> None:
        self._by_cabinet = particulars_by_cabinet(registry)

    def add(self, particulars: Particulars) -> None:
        """A cabinet registered since the last refresh, read on demand."""
        self._by_cabinet = {**self._by_cabinet, particulars.cabinet.cabinet_id: particulars}

    def get(self, cabinet_id: str) -> Particulars | None:
        return self._by_cabinet.get(cabinet_id)

    def __len__(self) -> int:
        return len(self._by_cabinet)


def _expired(expiry: date | None, on: date) -> bool | None:
    return None if expiry is None else expiry < on


def readiness(twin: Twin | None, cabinet: Cabinet | None, on: date) -> DispatchReadiness:
    """The AED's usability from its twin; expiry dates fall back to the registry's."""
    pads_expiry = twin.pads_expiry if twin and twin.pads_expiry else None
    battery_expiry = twin.battery_expiry if twin and twin.battery_expiry else None
    if cabinet is not None:
        pads_expiry = pads_expiry or cabinet.pads_expiry
        battery_expiry = battery_expiry or cabinet.battery_expiry
    if twin is None:
        return DispatchReadiness(
            pads_expiry=pads_expiry,
            pads_expired=_expired(pads_expiry, on),
            battery_expiry=battery_expiry,
            battery_expired=_expired(battery_expiry, on),
        )
    return DispatchReadiness(
        as_of=twin.last_seen,
        online=twin.online,
        aed_ready=twin.aed_ready,
        battery_pct=twin.battery_pct,
        last_selftest_result=twin.selftest_result,
        last_selftest_at=twin.selftest_ts,
        last_selftest_fault_codes=twin.selftest_fault_codes or (),
        pads_present=twin.pads_present,
        pads_expiry=pads_expiry,
        pads_expired=_expired(pads_expiry, on),
        battery_expiry=battery_expiry,
        battery_expired=_expired(battery_expiry, on),
    )


def build_event(
    notice: Notice, particulars: Particulars | None, twin: Twin | None
) -> DispatchEvent:
    """The dispatch message of ``notice``, with the cabinet's particulars and readiness."""
    newest = notice.events[-1]
    cabinet = particulars.cabinet if particulars else None
    location = DispatchLocation()
    access = DispatchAccess()
    if cabinet is not None:
        location = DispatchLocation(
            site_name=cabinet.name,
            latitude=cabinet.latitude,
            longitude=cabinet.longitude,
            address=cabinet.address,
            floor=cabinet.floor,
            indoor_description=cabinet.indoor_description,
            region_code=cabinet.region_code,
        )
        access = DispatchAccess(
            mode=cabinet.access_mode.value, availability_hours=cabinet.availability_hours
        )
    aed_model = (cabinet.aed_model if cabinet else None) or (twin.aed_model if twin else None)
    return DispatchEvent(
        event_id=notice.message_id,
        idempotency_key=IdempotencyKey(
            cabinet_id=notice.cabinet_id, boot_id=newest.boot_id, seq=newest.seq
        ),
        kind=notice.kind,
        incident_id=notice.incident_id,
        update_number=notice.number,
        references=notice.references,
        incident_opened_at=notice.opened_at,
        incident_active=notice.active,
        door_open=notice.door_open,
        aed_removed=notice.aed_removed,
        cabinet_id=notice.cabinet_id,
        registered=cabinet is not None,
        event_type=newest.type,
        device_ts=newest.device_ts,
        events=notice.events,
        omitted_events=notice.omitted,
        sent_at=notice.created_at,
        aed_model=aed_model or None,
        location=location,
        access=access,
        readiness=readiness(twin, cabinet, newest.device_ts.date()),
        captain=particulars.contact if particulars else None,
    )
