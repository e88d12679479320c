"""Rows to records and back: the mapping the text formats (CSV, YAML) share.

A *row* is what one line of a cabinets, people or districts CSV, or one item of a YAML list, holds:
field names to text. Empty text means "not given" (the model's default, or missing when
the field is required). A cabinet row also names the people who look after it in
``captain``, ``backups`` (rank order) and ``coordinator``; those become
:class:`~aedfleet.registry.Assignment` records.

:class:`RegistryBuilder` turns rows into validated records, collecting every problem
with its :class:`~ingest.registry.errors.Source`, and checks duplicates within a file.
A record with a problem is left out of what it builds, and the problem kept beside the
records that had none, so that checks needing the whole registry (the people a cabinet
names) still run on those and every problem is reported in one pass.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from enum import Enum
from typing import Any, Final, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from aedfleet.registry import Assignment, Cabinet, District, Person, PersonId, Registry, Role
from ingest.registry.errors import RegistryError, RowProblem, Source

CABINET_FIELDS: Final = tuple(Cabinet.model_fields)
PERSON_FIELDS: Final = tuple(Person.model_fields)
DISTRICT_FIELDS: Final = tuple(District.model_fields)
DISTRICT_COLUMNS: Final = DISTRICT_FIELDS
ASSIGNMENT_COLUMNS: Final = ("captain", "backups", "coordinator")
CABINET_COLUMNS: Final = (*CABINET_FIELDS, *ASSIGNMENT_COLUMNS)
PERSON_COLUMNS: Final = PERSON_FIELDS
REQUIRED_CABINET_COLUMNS: Final = tuple(
    name for name, info in Cabinet.model_fields.items() if info.is_required()
)
REQUIRED_PERSON_COLUMNS: Final = tuple(
    name for name, info in Person.model_fields.items() if info.is_required()
)
REQUIRED_DISTRICT_COLUMNS: Final = tuple(
    name for name, info in District.model_fields.items() if info.is_required()
)
BACKUP_SEPARATOR: Final = ";"
PROGRESS_EVERY: Final = 1000

_DATE_FIELDS: Final = frozenset({"install_date", "pads_expiry", "battery_expiry"})
_ISO_DATE: Final = re.compile(r"\d{4}-\d{2}-\d{2}")
_COLUMN_OF_ROLE: Final = {
    Role.CAPTAIN: "captain",
    Role.BACKUP: "backups",
    Role.COORDINATOR: "coordinator",
}
_SHOWN_INPUT: Final = 60
_PERSON_IDS: Final = TypeAdapter(list[PersonId])
MAX_RANK: Final = 99  # the bound of Assignment.rank, checked by a test

_M = TypeVar("_M", bound=BaseModel)
Progress = Callable[[int], None]
Row = Mapping[str, Any]


@dataclass(frozen=True)
class Origin:
    """Where each record of a parsed file came from, to point errors found later at it."""

    cabinets: Mapping[str, Source] = field(default_factory=dict)
    people: Mapping[str, Source] = field(default_factory=dict)
    districts: Mapping[str, Source] = field(default_factory=dict)


@dataclass(frozen=True)
class ParsedFile:
    """A registry read from one or more files, with where each record was read."""

    registry: Registry
    origin: Origin = field(default_factory=Origin)
    skipped: int = 0
    """Items deliberately left out, e.g. GeoJSON features that are not defibrillators."""
    problems: tuple[RowProblem, ...] = ()
    """What was wrong with the files; ``registry`` holds only the records that had nothing
    wrong. Not empty means the files must not be imported."""
    refused_people: frozenset[str] = frozenset()
    """The ids of people whose rows had a problem: named elsewhere, they are not unknown."""

    def checked(self) -> ParsedFile:
        """This file when it had no problems; raises :class:`RegistryError` naming them."""
        if self.problems:
            raise RegistryError(self.problems)
        return self


def column_of(role: Role) -> str:
    """The cabinet column (``captain``, ``backups``, ``coordinator``) that holds ``role``."""
    return _COLUMN_OF_ROLE[role]


def describe(error: ValidationError, prefix: str = "") -> list[str]:
    """One reason per pydantic error: ``latitude: Input should be … (got 123.4)``."""
    reasons = []
    for item in error.errors(include_url=False):
        location = prefix or ".".join(str(part) for part in item["loc"]) or "record"
        reason = f"{location}: {item['msg']}"
        if item["type"] != "missing":
            reason += f" (got {_show(item['input'])})"
        reasons.append(reason)
    return reasons


def _show(value: object) -> str:
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= _SHOWN_INPUT else text[: _SHOWN_INPUT - 1] + "…"


def _blank(value: Any) -> bool:
    return isinstance(value, str) and value.isspace()


def _given(value: Any) -> bool:
    """False for None, empty or blank text and an empty list: "not given"."""
    return bool(value) and not (isinstance(value, str) and value.isspace())


class RegistryBuilder:
    """Collects validated records and every problem, then builds a :class:`ParsedFile`."""

    def __init__(self, on_progress: Progress | None = None) -> None:
        self.problems: list[RowProblem] = []
        self.skipped = 0
        self._cabinets: list[Cabinet] = []
        self._people: list[Person] = []
        self._assignments: list[Assignment] = []
        self._districts: list[District] = []
        self._cabinet_sources: dict[str, Source] = {}
        self._person_sources: dict[str, Source] = {}
        self._district_sources: dict[str, Source] = {}
        self._refused_people: set[str] = set()
        self._on_progress = on_progress
        self._rows = 0

    def report(self, where: Source, reason: str) -> None:
        self.problems.append(where.problem(reason))

    def tick(self) -> None:
        """Count one row read, telling the progress callback every so often."""
        self._rows += 1
        if self._on_progress is not None and self._rows % PROGRESS_EVERY == 0:
            self._on_progress(self._rows)

    def add_cabinet_row(self, row: Row, where: Source) -> None:
        """A cabinet from text: its fields plus ``captain``, ``backups``, ``coordinator``."""
        values = {name: value for name, value in row.items() if value and not _blank(value)}
        people = {column: values.pop(column, "") for column in ASSIGNMENT_COLUMNS}
        if not self._check_keys(values, CABINET_FIELDS, where):
            return
        dates_ok = self._check_dates(values, where)
        cabinet = self._validate(Cabinet, values, where)  # reports the other fields too
        if not dates_ok:
            cabinet = None
        self._add_assignments(cabinet, people, where)
        if cabinet is not None:
            self.add_cabinet(cabinet, where)

    def add_person_row(self, row: Row, where: Source) -> None:
        values = {name: value for name, value in row.items() if value and not _blank(value)}
        if not self._check_keys(values, PERSON_FIELDS, where):
            return
        person = self._validate(Person, values, where)
        if person is not None:
            self.add_person(person, where)
        elif isinstance(person_id := values.get("person_id"), str):
            self._refused_people.add(person_id.strip())

    def add_district_row(self, row: Row, where: Source) -> None:
        values = {name: value for name, value in row.items() if value and not _blank(value)}
        if not self._check_keys(values, DISTRICT_FIELDS, where):
            return
        district = self._validate(District, values, where)
        if district is not None:
            self.add_district(district, where)

    def add_district(self, district: District, where: Source) -> None:
        first = self._district_sources.get(district.region_code)
        if first is not None:
            self.report(
                where, f"duplicate district region_code {district.region_code!r}, first at {first}"
            )
            return
        self._district_sources[district.region_code] = where
        self._districts.append(district)

    def add_cabinet(self, cabinet: Cabinet, where: Source) -> None:
        first = self._cabinet_sources.get(cabinet.cabinet_id)
        if first is not None:
            self.report(where, f"duplicate cabinet_id {cabinet.cabinet_id!r}, first at {first}")
            return
        self._cabinet_sources[cabinet.cabinet_id] = where
        self._cabinets.append(cabinet)

    def add_person(self, person: Person, where: Source) -> None:
        first = self._person_sources.get(person.person_id)
        if first is not None:
            self.report(where, f"duplicate person_id {person.person_id!r}, first at {first}")
            return
        self._person_sources[person.person_id] = where
        self._people.append(person)

    def merge(self, parsed: ParsedFile) -> None:
        """Add another file's records, reporting ids that both files define."""
        for cabinet in parsed.registry.cabinets:
            self.add_cabinet(cabinet, parsed.origin.cabinets.get(cabinet.cabinet_id, Source("?")))
        for person in parsed.registry.people:
            self.add_person(person, parsed.origin.people.get(person.person_id, Source("?")))
        for district in parsed.registry.districts:
            where = parsed.origin.districts.get(district.region_code, Source("?"))
            self.add_district(district, where)
        self._assignments.extend(parsed.registry.assignments)
        self.skipped += parsed.skipped
        self.problems.extend(parsed.problems)
        self._refused_people.update(parsed.refused_people)

    def build(self) -> ParsedFile:
        """The records read so far without a problem, and every problem found."""
        if self._on_progress is not None and self._rows % PROGRESS_EVERY:
            self._on_progress(self._rows)
        registry = Registry.model_construct(
            cabinets=tuple(self._cabinets),
            people=tuple(self._people),
            assignments=tuple(self._assignments),
            districts=tuple(self._districts),
        )
        return ParsedFile(
            registry,
            Origin(self._cabinet_sources, self._person_sources, self._district_sources),
            self.skipped,
            tuple(self.problems),
            frozenset(self._refused_people),
        )

    def _check_keys(self, values: Mapping[str, Any], known: Sequence[str], where: Source) -> bool:
        unknown = [name for name in values if name not in known]
        if unknown:
            self.report(
                where, f"unknown field{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}"
            )
        return not unknown

    def _check_dates(self, values: dict[str, Any], where: Source) -> bool:
        """Reject dates not written YYYY-MM-DD, which pydantic would read other ways."""
        ok = True
        for name in sorted(_DATE_FIELDS & values.keys()):
            value = values[name]
            if isinstance(value, str) and not _ISO_DATE.fullmatch(value.strip()):
                self.report(where, f"{name}: expected a date as YYYY-MM-DD (got {_show(value)})")
                del values[name]
                ok = False
        return ok

    def _validate(self, model: type[_M], values: Mapping[str, Any], where: Source) -> _M | None:
        try:
            return model.model_validate(values)
        except ValidationError as exc:
            for reason in describe(exc):
                self.report(where, reason)
            return None

    def _add_assignments(
        self, cabinet: Cabinet | None, people: Mapping[str, Any], where: Source
    ) -> None:
        """Assignments of a cabinet row's people; checked even when the cabinet is bad."""
        for role, column in _COLUMN_OF_ROLE.items():
            value = people[column]
            if not _given(value):
                continue
            if role is not Role.BACKUP and not isinstance(value, str):
                self.report(where, f"{column}: expected one person id (got {_show(value)})")
                continue
            ids = _person_ids(value) if role is Role.BACKUP else [value]
            if len(set(ids)) != len(ids):
                self.report(where, f"{column}: a person is listed twice (got {_show(value)})")
                continue
            if len(ids) > MAX_RANK + 1:
                self.report(where, f"{column}: at most {MAX_RANK + 1} people (got {len(ids)})")
                continue
            try:
                person_ids = _PERSON_IDS.validate_python(ids)
            except ValidationError as exc:
                for item in exc.errors(include_url=False):
                    self.report(where, f"{column}: {item['msg']} (got {_show(item['input'])})")
                continue
            if cabinet is None:
                continue
            for rank, person_id in enumerate(person_ids):
                try:
                    assignment = Assignment.model_validate(
                        {
                            "cabinet_id": cabinet.cabinet_id,
                            "person_id": person_id,
                            "role": role,
                            "rank": rank,
                        }
                    )
                except ValidationError as exc:  # not expected: every part is checked above
                    self.problems.extend(where.problem(f"{column}: {r}") for r in describe(exc))
                else:
                    self._assignments.append(assignment)


def _person_ids(value: Any) -> list[Any]:
    if isinstance(value, str):
        return [part.strip() for part in value.split(BACKUP_SEPARATOR) if part.strip()]
    if isinstance(value, list):
        return [part.strip() if isinstance(part, str) else part for part in value if _given(part)]
    return [value]


def cabinet_rows(registry: Registry) -> Iterator[dict[str, Any]]:
    """Each cabinet as a row of python values, with the people who look after it.

    Raises :class:`RegistryError` when an assignment cannot be written in a cabinet row:
    its cabinet is not in the registry, or a cabinet has two captains or two coordinators.
    """
    by_cabinet: dict[str, dict[Role, list[Assignment]]] = {}
    for assignment in registry.assignments:
        by_cabinet.setdefault(assignment.cabinet_id, {}).setdefault(assignment.role, []).append(
            assignment
        )
    ids = {cabinet.cabinet_id for cabinet in registry.cabinets}
    problems = [
        RowProblem(None, "export", f"assignment of {cabinet_id!r}: no such cabinet in the registry")
        for cabinet_id in by_cabinet
        if cabinet_id not in ids
    ]
    for cabinet_id, roles in by_cabinet.items():
        for role in (Role.CAPTAIN, Role.COORDINATOR):
            if len(roles.get(role, ())) > 1:
                problems.append(
                    RowProblem(None, "export", f"cabinet {cabinet_id!r} has more than one {role}")
                )
    if problems:
        raise RegistryError(problems)
    for cabinet in registry.cabinets:
        row: dict[str, Any] = dict(cabinet)
        roles = by_cabinet.get(cabinet.cabinet_id, {})
        row["captain"] = _single(roles.get(Role.CAPTAIN))
        row["backups"] = [a.person_id for a in sorted(roles.get(Role.BACKUP, ()), key=_rank)]
        row["coordinator"] = _single(roles.get(Role.COORDINATOR))
        yield row


def person_rows(people: Iterable[Person]) -> Iterator[dict[str, Any]]:
    for person in people:
        yield dict(person)


def district_rows(districts: Iterable[District]) -> Iterator[dict[str, Any]]:
    for district in districts:
        yield dict(district)


def _rank(assignment: Assignment) -> int:
    return assignment.rank


def _single(assignments: list[Assignment] | None) -> str:
    return assignments[0].person_id if assignments else ""


def to_text(value: Any) -> str:
    """A python value as the text a CSV cell holds (empty for None)."""
    if value is None:
        return ""
    if isinstance(value, Enum):
        return str(value.value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, date):
        return value.isoformat()
    return str(value)
