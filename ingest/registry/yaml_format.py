"""The registry as one YAML document.

::

    cabinets:
      - cabinet_id: SZ-FT-0001
        name: 深圳北站 B1层 东出口
        latitude: 22.6094
        longitude: 114.0290
        captain: p-zhang
        backups: [p-li, p-wang]
        coordinator: p-chen
    people:
      - person_id: p-zhang
        name: 张伟
        phone: "13800138000"
    districts:
      - region_code: "440309"
        name: 龙华区
        population: 2528872

Items carry the same fields as the CSV columns (``backups`` is a list, or a ``;``
separated string). Every scalar is read as text, exactly as a CSV cell, so ``0755`` stays
``0755`` and a phone number is not turned into an integer; an empty value or a plain
``~`` / ``null`` means "not given". Problems name the line where the item starts.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from enum import Enum
from typing import Any, Final

import yaml

from aedfleet.registry import Cabinet, District, Person, Registry
from ingest.registry.errors import RegistryError, RowProblem, Source
from ingest.registry.records import ParsedFile, Progress, RegistryBuilder, cabinet_rows

_Loader: Final[type[Any]] = getattr(yaml, "CBaseLoader", yaml.BaseLoader)
_Dumper: Final[type[Any]] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_NULLS: Final = frozenset({"", "~", "null", "Null", "NULL"})
_SECTIONS: Final = ("cabinets", "people", "districts")


def parse_yaml(text: str, name: str, on_progress: Progress | None = None) -> ParsedFile:
    """Parse a registry YAML document; bad items are in the result's ``problems`` by the
    line they start on, and a document that is not a registry raises :class:`RegistryError`."""
    try:
        root = yaml.compose(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        reason = " ".join(part for part in (exc.context, exc.problem) if part)
        raise RegistryError([RowProblem(line, name, f"not valid YAML: {reason}")]) from None
    except yaml.YAMLError as exc:
        raise RegistryError([RowProblem(None, name, f"not valid YAML: {exc}")]) from None
    builder = RegistryBuilder(on_progress)
    if root is None or _is_null(root):
        return builder.build()
    if not isinstance(root, yaml.MappingNode):
        raise RegistryError(
            [
                RowProblem(
                    _line(root), name, "expected a mapping with 'cabinets', 'people', 'districts'"
                )
            ]
        )
    for key_node, value_node in root.value:
        section = key_node.value
        where = Source(name, _line(key_node))
        if section not in _SECTIONS:
            builder.report(where, f"unknown section {section!r} (known: {', '.join(_SECTIONS)})")
            continue
        add = {
            "cabinets": builder.add_cabinet_row,
            "people": builder.add_person_row,
            "districts": builder.add_district_row,
        }[section]
        for item, item_where in _items(value_node, name, section, builder):
            builder.tick()
            add(item, item_where)
    return builder.build()


def _items(
    node: yaml.Node, name: str, section: str, builder: RegistryBuilder
) -> Iterator[tuple[dict[str, Any], Source]]:
    if _is_null(node):
        return
    if not isinstance(node, yaml.SequenceNode):
        builder.report(Source(name, _line(node)), f"{section}: expected a list of items")
        return
    for item in node.value:
        where = Source(name, _line(item))
        if not isinstance(item, yaml.MappingNode):
            builder.report(where, f"{section}: an item is not a mapping of field: value")
            continue
        row: dict[str, Any] = {}
        for key_node, value_node in item.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            if not isinstance(key, str):
                builder.report(where, "a field name is not text")
            elif key in row:
                builder.report(where, f"{key}: given twice (again on line {_line(key_node)})")
            elif (value := _value(value_node)) is None:
                builder.report(where, f"{key}: expected text or a list of text")
            else:
                row[key] = value
        yield row, where


def _value(node: yaml.Node) -> str | list[str] | None:
    if isinstance(node, yaml.ScalarNode):
        return "" if _is_null(node) else str(node.value)
    if isinstance(node, yaml.SequenceNode) and all(
        isinstance(child, yaml.ScalarNode) for child in node.value
    ):
        return [_value(child) or "" for child in node.value]  # type: ignore[misc]
    return None


def _is_null(node: yaml.Node) -> bool:
    # A plain (unquoted) scalar: the C parser gives style "", the pure-python one None.
    return isinstance(node, yaml.ScalarNode) and not node.style and node.value in _NULLS


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def dump_yaml(registry: Registry) -> str:
    """The registry as a YAML document :func:`parse_yaml` reads back to the same registry.

    Fields left at their default are omitted.
    """
    cabinets = []
    for row in cabinet_rows(registry):
        item = _plain(row, Cabinet)
        for column in ("captain", "backups", "coordinator"):
            if row[column]:
                item[column] = row[column]
        cabinets.append(item)
    document = {
        "cabinets": cabinets,
        "people": [_plain(dict(person), Person) for person in registry.people],
    }
    if registry.districts:
        document["districts"] = [
            _plain(dict(district), District) for district in registry.districts
        ]
    text: str = yaml.dump(
        document, Dumper=_Dumper, allow_unicode=True, sort_keys=False, width=2**16
    )
    return text


def _plain(row: dict[str, Any], model: type[Cabinet | Person | District]) -> dict[str, Any]:
    item: dict[str, Any] = {}
    for name, info in model.model_fields.items():
        value = row[name]
        if not info.is_required() and value == info.default:
            continue
        if isinstance(value, Enum):
            value = value.value
        elif not isinstance(value, str | float | int | date):
            value = str(value)
        item[name] = value
    return item
