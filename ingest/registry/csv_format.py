"""The registry as CSV: one file of cabinets, one of people, one of districts.

All are UTF-8 (a byte order mark, as Excel writes, is accepted), comma separated, with a
header row naming the columns; column order is free. A file is a *cabinets* file when its
header has ``cabinet_id``, a *people* file when it has ``person_id`` but no
``cabinet_id``, and a *districts* file when it has ``region_code`` but neither.

Cabinets: the :class:`~aedfleet.registry.Cabinet` fields, plus ``captain`` and
``coordinator`` (one person id each) and ``backups`` (person ids separated by ``;`` in
the order they are called). People: the :class:`~aedfleet.registry.Person` fields.
Districts: the :class:`~aedfleet.registry.District` fields.

An empty cell means "not given": the field's default, or a missing value when the field
is required. Dates are ``YYYY-MM-DD``. The columns are described in ``docs/registry.md``.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Final, TextIO

from aedfleet.registry import District, Person, Registry
from ingest.registry.errors import RegistryError, RowProblem, Source
from ingest.registry.records import (
    BACKUP_SEPARATOR,
    CABINET_COLUMNS,
    DISTRICT_COLUMNS,
    PERSON_COLUMNS,
    REQUIRED_CABINET_COLUMNS,
    REQUIRED_DISTRICT_COLUMNS,
    REQUIRED_PERSON_COLUMNS,
    ParsedFile,
    Progress,
    RegistryBuilder,
    cabinet_rows,
    district_rows,
    person_rows,
    to_text,
)


class CsvKind(StrEnum):
    CABINETS = "cabinets"
    PEOPLE = "people"
    DISTRICTS = "districts"


_COLUMNS: Final = {
    CsvKind.CABINETS: CABINET_COLUMNS,
    CsvKind.PEOPLE: PERSON_COLUMNS,
    CsvKind.DISTRICTS: DISTRICT_COLUMNS,
}
_REQUIRED: Final = {
    CsvKind.CABINETS: REQUIRED_CABINET_COLUMNS,
    CsvKind.PEOPLE: REQUIRED_PERSON_COLUMNS,
    CsvKind.DISTRICTS: REQUIRED_DISTRICT_COLUMNS,
}


def kind_of(header: Sequence[str]) -> CsvKind | None:
    """Which kind of CSV a header row belongs to, or None when it is neither."""
    if "cabinet_id" in header:
        return CsvKind.CABINETS
    if "person_id" in header:
        return CsvKind.PEOPLE
    if "region_code" in header:
        return CsvKind.DISTRICTS
    return None


def parse_csv(text: str, name: str, on_progress: Progress | None = None) -> ParsedFile:
    """Parse the text of a cabinets, people or districts CSV named ``name`` (used in problems).

    Every bad row is in the result's ``problems`` with the line it starts on; a file
    that cannot be read as a registry CSV at all (no or a bad header) raises
    :class:`RegistryError`.
    """
    builder = RegistryBuilder(on_progress)
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader, None)
    except csv.Error as exc:
        raise RegistryError([RowProblem(1, name, f"header: {exc}")]) from None
    if header is None:
        raise RegistryError([RowProblem(None, name, "the file is empty (no header row)")])
    header = [column.strip() for column in header]
    kind = _check_header(header, name, builder)
    if kind is None:
        raise RegistryError(builder.problems)
    known = set(_COLUMNS[kind])
    add = {
        CsvKind.CABINETS: builder.add_cabinet_row,
        CsvKind.PEOPLE: builder.add_person_row,
        CsvKind.DISTRICTS: builder.add_district_row,
    }[kind]
    width = len(header)
    unnamed = [index for index, column in enumerate(header) if not column]
    start = reader.line_num + 1
    while True:
        try:
            cells = next(reader, None)
        except csv.Error as exc:
            builder.report(Source(name, start), f"not valid CSV: {exc}")
            break
        if cells is None:
            break
        where = Source(name, start)
        start = reader.line_num + 1
        if not any(cell.strip() for cell in cells):
            continue  # a blank line, or one of only commas as spreadsheets leave them
        builder.tick()
        if len(cells) > width and any(cell.strip() for cell in cells[width:]):
            builder.report(where, f"the row has {len(cells)} cells, the header {width} columns")
            continue
        if unnamed and any(i < len(cells) and cells[i].strip() for i in unnamed):
            builder.report(where, "a value in a column without a name in the header")
            continue
        row = {column: cell for column, cell in zip(header, cells, strict=False) if column in known}
        add(row, where)
    return builder.build()


def _check_header(header: list[str], name: str, builder: RegistryBuilder) -> CsvKind | None:
    where = Source(name, 1)
    kind = kind_of(header)
    if kind is None:
        builder.report(
            where,
            "cannot tell what this CSV holds: a cabinets file needs a cabinet_id column, "
            "a people file a person_id column, a districts file a region_code column "
            f"(header: {', '.join(header)})",
        )
        return None
    columns = _COLUMNS[kind]
    missing = [column for column in _REQUIRED[kind] if column not in header]
    if missing:
        builder.report(where, f"{kind} file without required columns: {', '.join(missing)}")
        return None
    unknown = [column for column in header if column and column not in columns]
    if unknown:
        builder.report(
            where,
            f"unknown column{'s' if len(unknown) > 1 else ''} in a {kind} file: "
            f"{', '.join(repr(column) for column in unknown)} (known: {', '.join(columns)})",
        )
    repeated = sorted({column for column in header if column and header.count(column) > 1})
    if repeated:
        builder.report(where, f"columns named twice: {', '.join(repeated)}")
    return kind


def write_cabinets_csv(registry: Registry, stream: TextIO) -> None:
    """Write the cabinets of ``registry`` and their people, as :func:`parse_csv` reads them."""
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(CABINET_COLUMNS)
    for row in cabinet_rows(registry):
        row["backups"] = BACKUP_SEPARATOR.join(row["backups"])
        writer.writerow([to_text(row[column]) for column in CABINET_COLUMNS])


def write_people_csv(people: Iterable[Person], stream: TextIO) -> None:
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(PERSON_COLUMNS)
    for row in person_rows(people):
        writer.writerow([to_text(row[column]) for column in PERSON_COLUMNS])


def write_districts_csv(districts: Iterable[District], stream: TextIO) -> None:
    writer = csv.writer(stream, lineterminator="\n")
    writer.writerow(DISTRICT_COLUMNS)
    for row in district_rows(districts):
        writer.writerow([to_text(row[column]) for column in DISTRICT_COLUMNS])
