"""Reading registry files, planning an import, and writing a registry back out.

Import semantics (also in ``docs/registry.md``):

* **Upsert, never delete.** A record in the file is added when its key is new and
  replaces the stored record when it differs. Records absent from the file are left
  alone: an import cannot remove a cabinet, a person or an assignment.
* **Keys.** Cabinets by ``cabinet_id``, people by ``person_id``, districts by
  ``region_code``, assignments by
  ``(cabinet_id, person_id, role)`` as the state store keys them; ``rank`` is a value, so
  reordering backups changes their assignments, while naming a new captain adds an
  assignment and leaves the previous captain's in place.
* **Idempotent.** Unchanged records are not in the plan, so importing the same file
  twice makes an empty plan the second time.
* **All or nothing, every problem at once.** Reading keeps the problems of bad rows
  beside the good records instead of stopping, so :func:`plan_import` can also check
  the people and cabinets the good ones name against the store, then either returns a
  plan or raises one :class:`~ingest.registry.errors.RegistryError` listing every
  problem of both; the state store applies a plan in one transaction.

The pipeline a command runs::

    parsed = read_registry_files(paths, on_progress=bar.update)
    plan = plan_import(store.load_registry(), parsed)
    store.apply_registry(plan.upserts)
"""

from __future__ import annotations

import gc
import io
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeVar

from aedfleet.registry import Assignment, Cabinet, District, Person, Registry
from ingest.registry.csv_format import (
    parse_csv,
    write_cabinets_csv,
    write_districts_csv,
    write_people_csv,
)
from ingest.registry.errors import RegistryError, RowProblem, Source
from ingest.registry.osm import parse_geojson
from ingest.registry.records import Origin, ParsedFile, Progress, RegistryBuilder, column_of
from ingest.registry.yaml_format import dump_yaml, parse_yaml

__all__ = [
    "Counts",
    "ImportPlan",
    "Origin",
    "ParsedFile",
    "RegistryError",
    "plan_import",
    "read_registry_file",
    "read_registry_files",
    "read_registry_source",
    "write_registry_file",
]

_Parser = Callable[[str, str, Progress | None], ParsedFile]
_PARSERS: Final[Mapping[str, _Parser]] = {
    ".csv": parse_csv,
    ".yaml": parse_yaml,
    ".yml": parse_yaml,
    ".geojson": parse_geojson,
    ".json": parse_geojson,
}
PEOPLE_SUFFIX: Final = ".people.csv"
DISTRICTS_SUFFIX: Final = ".districts.csv"

_R = TypeVar("_R", Cabinet, Person, Assignment, District)


@dataclass(frozen=True, slots=True)
class Counts:
    added: int = 0
    changed: int = 0
    unchanged: int = 0


@dataclass(frozen=True, slots=True)
class ImportPlan:
    """What an import would write: only the records that are new or differ."""

    upserts: Registry
    cabinets: Counts
    people: Counts
    assignments: Counts
    districts: Counts = Counts()

    @property
    def added(self) -> int:
        return sum(counts.added for counts in self._all)

    @property
    def changed(self) -> int:
        return sum(counts.changed for counts in self._all)

    @property
    def unchanged(self) -> int:
        return sum(counts.unchanged for counts in self._all)

    @property
    def _all(self) -> tuple[Counts, ...]:
        return (self.cabinets, self.people, self.assignments, self.districts)

    @property
    def is_empty(self) -> bool:
        return not (self.added or self.changed)


def read_registry_source(path: Path, *, on_progress: Progress | None = None) -> ParsedFile:
    """Parse one registry file by its extension, keeping where each record was read.

    ``.csv`` (cabinets or people, told apart by the header), ``.yaml``/``.yml``, and
    ``.geojson``/``.json`` (OpenStreetMap defibrillators). ``on_progress`` is called with
    the number of rows read so far, every thousand rows and once at the end. Bad rows
    are in the result's ``problems``; a file that cannot be read as a registry at all
    raises :class:`RegistryError`.
    """
    parser = _PARSERS.get(path.suffix.lower())
    if parser is None:
        known = ", ".join(_PARSERS)
        raise RegistryError([RowProblem(None, path.name, f"unknown file type (known: {known})")])
    text = _read_text(path)
    with _cycle_collector_paused():
        return parser(text, path.name, on_progress)


def read_registry_file(path: Path, on_progress: Progress | None = None) -> Registry:
    """The registry one file holds; raises :class:`RegistryError` naming every bad row."""
    return read_registry_source(path, on_progress=on_progress).checked().registry


def read_registry_files(
    paths: Sequence[Path], *, on_progress: Progress | None = None
) -> ParsedFile:
    """Several files as one registry (a people CSV and a cabinets CSV, say).

    An id defined in two files is a problem naming both places. The problems of all
    files, those that cannot be read at all included, are in the result's ``problems``.
    """
    builder = RegistryBuilder()
    done = 0

    def progress(rows: int) -> None:
        if on_progress is not None:
            on_progress(done + rows)

    for path in paths:
        try:
            parsed = read_registry_source(path, on_progress=progress)
        except RegistryError as exc:
            builder.problems.extend(exc.problems)
            continue
        done += len(parsed.registry.cabinets) + len(parsed.registry.people) + parsed.skipped
        builder.merge(parsed)
    return builder.build()


def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise RegistryError([RowProblem(None, path.name, f"cannot read: {exc.strerror}")]) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise RegistryError(
            [
                RowProblem(
                    line,
                    path.name,
                    "not UTF-8 text; save it as UTF-8 (in Excel: 'CSV UTF-8')",
                )
            ]
        ) from None


def plan_import(existing: Registry, incoming: ParsedFile | Registry) -> ImportPlan:
    """What importing ``incoming`` into ``existing`` changes. Pure: no I/O.

    Raises :class:`RegistryError` listing, together, the problems found while reading
    ``incoming`` and every person it names who is neither in it nor in ``existing``,
    assignment of a cabinet neither holds, and id defined twice; a parsed file's origin
    points these at lines.
    """
    parsed = incoming if isinstance(incoming, ParsedFile) else ParsedFile(incoming)
    with _cycle_collector_paused():
        return _plan(existing, parsed)


def _plan(existing: Registry, parsed: ParsedFile) -> ImportPlan:
    incoming, origin = parsed.registry, parsed.origin
    problems = [*parsed.problems, *_duplicates(incoming)]
    people = {person.person_id for person in incoming.people}
    people.update(person.person_id for person in existing.people)
    cabinets = {cabinet.cabinet_id for cabinet in incoming.cabinets}
    cabinets.update(cabinet.cabinet_id for cabinet in existing.cabinets)
    # A person whose own row is bad is reported there, not again where they are named.
    people.update(parsed.refused_people)
    for assignment in incoming.assignments:
        where = origin.cabinets.get(assignment.cabinet_id, Source("import"))
        column = column_of(assignment.role)
        if assignment.person_id not in people:
            problems.append(
                where.problem(
                    f"{column}: no person {assignment.person_id!r} in this import "
                    "or in the registry"
                )
            )
        if assignment.cabinet_id not in cabinets:
            problems.append(
                where.problem(f"{column}: no cabinet {assignment.cabinet_id!r} to assign to")
            )
    if problems:
        raise RegistryError(sorted(problems, key=_file_and_line))
    cabinet_upserts, cabinet_counts = _diff(existing.cabinets, incoming.cabinets, _cabinet_key)
    person_upserts, person_counts = _diff(existing.people, incoming.people, _person_key)
    assignment_upserts, assignment_counts = _diff(
        existing.assignments, incoming.assignments, _assignment_key
    )
    district_upserts, district_counts = _diff(existing.districts, incoming.districts, _district_key)
    upserts = Registry.model_construct(
        cabinets=tuple(cabinet_upserts),
        people=tuple(person_upserts),
        assignments=tuple(assignment_upserts),
        districts=tuple(district_upserts),
    )
    return ImportPlan(upserts, cabinet_counts, person_counts, assignment_counts, district_counts)


@contextmanager
def _cycle_collector_paused() -> Iterator[None]:
    """Pause Python's cycle collector while a file's records are built.

    Reading 100,000 cabinets makes millions of small objects, none of them garbage, and
    the collector would walk all that are alive again every few thousand allocations: a
    third of the time of a large import. Reference counting still frees everything at
    once; only cycles made meanwhile wait for the next collection.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _file_and_line(problem: RowProblem) -> tuple[str, int]:
    """Problems of reading and of planning, in the order of the files' lines (problems of
    a whole file first)."""
    return problem.record, -1 if problem.line is None else problem.line


def _cabinet_key(cabinet: Cabinet) -> str:
    return cabinet.cabinet_id


def _person_key(person: Person) -> str:
    return person.person_id


def _district_key(district: District) -> str:
    return district.region_code


def _assignment_key(assignment: Assignment) -> Hashable:
    """The state store's primary key of an assignment; ``rank`` is a value."""
    return (assignment.cabinet_id, assignment.person_id, assignment.role)


def _diff(
    existing: Iterable[_R], incoming: Iterable[_R], key: Callable[[_R], Hashable]
) -> tuple[list[_R], Counts]:
    stored = {key(record): record for record in existing}
    upserts: list[_R] = []
    added = changed = unchanged = 0
    for record in incoming:
        old = stored.get(key(record))
        if old is None:
            added += 1
        elif type(old) is type(record) and old.__dict__ == record.__dict__:
            # What pydantic's == compares for these frozen models without extras or
            # private attributes, at a fraction of the cost on 100,000 records.
            unchanged += 1
            continue
        else:
            changed += 1
        upserts.append(record)
    return upserts, Counts(added, changed, unchanged)


def _duplicates(registry: Registry) -> list[RowProblem]:
    problems = []
    for kind, keys in (
        ("cabinet", [_cabinet_key(cabinet) for cabinet in registry.cabinets]),
        ("person", [_person_key(person) for person in registry.people]),
        ("assignment", [_assignment_key(assignment) for assignment in registry.assignments]),
        ("district", [_district_key(district) for district in registry.districts]),
    ):
        seen: set[Hashable] = set()
        for item in keys:
            if item in seen:
                problems.append(RowProblem(None, "import", f"{kind} {item!r} is given twice"))
            seen.add(item)
    return problems


def write_registry_file(registry: Registry, path: Path) -> tuple[Path, ...]:
    """Export ``registry`` in the format ``path``'s extension names; returns the files written.

    ``.yaml``/``.yml`` write one document. ``.csv`` writes the cabinets (with their
    people columns) to ``path`` and, when there are people, the people to a sibling
    ``<stem>.people.csv``, and when there are districts, those to ``<stem>.districts.csv``;
    import them together with :func:`read_registry_files`.
    """
    suffix = path.suffix.lower()
    if suffix in {".yaml", ".yml"}:
        _write(path, dump_yaml(registry))
        return (path,)
    if suffix == ".csv":
        cabinets = io.StringIO()
        write_cabinets_csv(registry, cabinets)
        _write(path, cabinets.getvalue())
        written = [path]
        if registry.people:
            people_path = path.with_name(path.stem + PEOPLE_SUFFIX)
            people = io.StringIO()
            write_people_csv(registry.people, people)
            _write(people_path, people.getvalue())
            written.append(people_path)
        if registry.districts:
            districts_path = path.with_name(path.stem + DISTRICTS_SUFFIX)
            districts = io.StringIO()
            write_districts_csv(registry.districts, districts)
            _write(districts_path, districts.getvalue())
            written.append(districts_path)
        return tuple(written)
    raise RegistryError([RowProblem(None, path.name, "can export only to .csv, .yaml or .yml")])


def _write(path: Path, text: str) -> None:
    try:
        path.write_text(text, encoding="utf-8", newline="")
    except OSError as exc:
        raise RegistryError(
            [RowProblem(None, path.name, f"cannot write: {exc.strerror}")]
        ) from None
