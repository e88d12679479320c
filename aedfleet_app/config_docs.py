"""The configuration reference in docs/configuration.md, written from the settings models.

Every key of every service's settings, with its type and bounds, its default (never a
secret's), its description and the environment variable that sets it, between two markers
so that the prose around them stays hand-written. ``make docs`` (``python -m
aedfleet_app.config_docs``) rewrites the file; ``tests/test_config_docs.py`` fails when the
committed file differs from what this module writes, or when :func:`undescribed` names a
settings field without a ``Field(description=...)``.
"""

from __future__ import annotations

import json
import sys
import types
from collections.abc import Iterator, Sequence
from datetime import time, timedelta
from enum import Enum
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import annotated_types
from pydantic import AnyHttpUrl, BaseModel, SecretStr, TypeAdapter
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from aedfleet.settings import FileThenEnvSettings, env_name, is_secret_key
from aedfleet_app.alerting_process import AlertingProcessSettings
from dispatch.config import DispatchSettings
from edge_agent.config import AgentSettings
from ingest.config import IngestSettings

BEGIN = "<!-- BEGIN GENERATED: python -m aedfleet_app.config_docs (make docs) -->"
END = "<!-- END GENERATED -->"
DOC_PATH = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"

SERVICES: tuple[tuple[str, str, type[BaseModel]], ...] = (
    ("agent", "aedfleet agent --config cabinet.toml", AgentSettings),
    ("ingest", "aedfleet ingest --config ingest.toml", IngestSettings),
    ("alerting", "aedfleet alerting --config alerting.toml", AlertingProcessSettings),
    ("dispatch", "aedfleet dispatch --config dispatch.toml", DispatchSettings),
)
# Longer defaults (the built-in AED models, escalation steps) are summarised by their size.
_MAX_DEFAULT_CHARS = 60
_Loc = tuple[int | str, ...]


class ConfigDocsError(Exception):
    """The documentation file cannot take the generated reference."""


def _members(annotation: Any) -> list[Any]:
    """The types a value may have, ``Annotated`` and unions taken apart, None left out."""
    annotation = _unannotated(annotation)
    if get_origin(annotation) in (Union, types.UnionType):
        return [
            found
            for member in get_args(annotation)
            if member is not type(None)
            for found in _members(member)
        ]
    return [annotation]


def _is_optional(annotation: Any) -> bool:
    return get_origin(annotation) in (Union, types.UnionType) and type(None) in get_args(annotation)


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The settings models a value of this type is made of (unions taken apart)."""
    return [
        member
        for member in _members(annotation)
        if isinstance(member, type) and issubclass(member, BaseModel)
    ]


def _type_name(annotation: Any) -> str:
    names = [_one_type_name(member) for member in _members(annotation)]
    return " or ".join(dict.fromkeys(names))


def _one_type_name(annotation: Any) -> str:
    origin = get_origin(annotation)
    arguments = [argument for argument in get_args(annotation) if argument is not ...]
    simple: dict[Any, str] = {
        bool: "bool",
        int: "int",
        float: "float",
        str: "string",
        Path: "path",
        SecretStr: "secret",
        timedelta: "duration",
        time: "time of day",
        AnyHttpUrl: "URL",
    }
    if annotation in simple:
        return simple[annotation]
    if origin is Literal:
        return " or ".join(json.dumps(argument) for argument in arguments)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return " or ".join(json.dumps(member.value) for member in annotation)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return "table"
    if origin in (tuple, list, set, frozenset):
        if arguments and get_origin(arguments[0]) is tuple:
            return "table"  # pairs, given as a table
        item = _type_name(arguments[0]) if arguments else "value"
        return f"list of {item}"
    if origin is dict:
        return "table"
    if origin is not None and hasattr(annotation, "__metadata__"):
        return _type_name(arguments[0])
    name = getattr(annotation, "__name__", str(annotation))
    return "string" if name in ("EmailStr", "NameEmail") else name


def _bounds(field: FieldInfo) -> str:
    shown: list[str] = []
    for item in field.metadata:
        for attribute, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
            bound = getattr(item, attribute, None)
            if isinstance(item, getattr(annotated_types, attribute.capitalize())):
                shown.append(f"{sign} {_plain(bound)}")
        if isinstance(item, annotated_types.MinLen) and item.min_length:
            shown.append(f"length ≥ {item.min_length}")
        if isinstance(item, annotated_types.MaxLen):
            shown.append(f"length ≤ {item.max_length}")
    return f" ({', '.join(shown)})" if shown else ""


def _plain(value: object) -> str:
    dumped = TypeAdapter(type(value)).dump_python(value, mode="json")
    return dumped if isinstance(dumped, str) else json.dumps(dumped, ensure_ascii=False)


def _default(model: type[BaseModel], key: str, field: FieldInfo, value: object) -> str:
    if value is PydanticUndefined:
        return "required"
    if value is None:
        return "unset"
    if isinstance(value, tuple | list | frozenset | dict) and not value:
        return "none"
    if is_secret_key(model, (key,)):
        return "(secret, not shown)"
    if isinstance(value, BaseModel):
        return "its keys below"
    adapter: TypeAdapter[Any] = TypeAdapter(Any if field.annotation is None else field.annotation)
    dumped = adapter.dump_python(value, mode="json")
    text = json.dumps(dumped, ensure_ascii=False, sort_keys=True)
    if isinstance(dumped, str | int | float | bool):
        text = str(dumped).lower() if isinstance(dumped, bool) else str(dumped)
    if len(text) > _MAX_DEFAULT_CHARS:
        count = len(dumped) if isinstance(dumped, list | dict) else 0
        return f"{count} built in" if count else "(see the section's rows)"
    return f"`{text}`"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _rows(model: type[BaseModel], values: BaseModel | None, loc: _Loc) -> Iterator[str]:
    for name, field in model.model_fields.items():
        key = field.alias or name
        here = (*loc, key)
        if values is not None:
            value: object = getattr(values, name)
        else:
            value = field.get_default(call_default_factory=True)
        dotted = ".".join("[]" if isinstance(part, int) else str(part) for part in here)
        dotted = dotted.replace(".[]", "[]")
        annotation = field.annotation
        models = _models_in(annotation)
        items = _list_item_models(annotation)
        sections = models or items
        description = field.description or _summary(sections[0] if len(sections) == 1 else None)
        if len(models) > 1:
            kinds = ", ".join(_kind_of(member) for member in models)
            description = f"{description} One of: {kinds}.".strip()
        optional = ", optional" if _is_optional(annotation) else ""
        if isinstance(value, FileThenEnvSettings):
            # A whole service's settings inside another's (the alerting's [ingest]).
            text = field.description or f"The keys of the {key} service above, in this table"
            yield (
                f"| `{dotted}` | table | the {key} service's | {_cell(text)} "
                f"| `{env_name(here)}__<KEY>` |"
            )
            continue
        yield (
            f"| `{dotted}` | {_cell(_type_name(annotation))}{_bounds(field)}{optional} "
            f"| {_cell(_default(model, key, field, value))} | {_cell(description)} "
            f"| `{env_name(here)}` |"
        )
        for member in models:
            nested = value if isinstance(value, member) else None
            yield from _rows(member, nested, here)
        for member in items:
            yield from _rows(member, None, (*here, 0))


def undescribed(services: Sequence[tuple[str, str, type[BaseModel]]] = SERVICES) -> list[str]:
    """The keys, as ``service: dotted.key``, whose field has no ``Field(description=...)``."""
    return [f"{name}: {key}" for name, _, model in services for key in _undescribed(model, "")]


def _undescribed(model: type[BaseModel], prefix: str) -> Iterator[str]:
    for name, field in model.model_fields.items():
        key = f"{prefix}{field.alias or name}"
        if not field.description:
            yield key
        if isinstance(field.annotation, type) and issubclass(field.annotation, FileThenEnvSettings):
            continue  # another service's settings, checked as that service
        for member in _models_in(field.annotation):
            yield from _undescribed(member, f"{key}.")
        for member in _list_item_models(field.annotation):
            yield from _undescribed(member, f"{key}[].")


def _summary(model: type[BaseModel] | None) -> str:
    """A section's description: the first paragraph of its model's own docstring."""
    doc = model.__dict__.get("__doc__") if model is not None else None
    if not isinstance(doc, str):
        return ""
    return " ".join(doc.strip().split("\n\n")[0].split()).replace("``", "`")


def _kind_of(model: type[BaseModel]) -> str:
    kind = model.model_fields.get("kind")
    if kind is not None and isinstance(kind.default, str):
        return f'kind = "{kind.default}"'
    return model.__name__


def _list_item_models(annotation: Any) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    for member in _members(annotation):
        origin = get_origin(member)
        if origin in (tuple, list, set, frozenset):
            for argument in get_args(member):
                if argument is not ...:
                    found += _models_in(_unannotated(argument))
    return found


def _unannotated(annotation: Any) -> Any:
    while hasattr(annotation, "__metadata__"):
        annotation = get_args(annotation)[0]
    return annotation


def reference(services: Sequence[tuple[str, str, type[BaseModel]]] = SERVICES) -> str:
    """The generated part of docs/configuration.md, markers included."""
    lines = [
        BEGIN,
        "",
        "## Reference",
        "",
        "Written by `make docs` from the settings models' field descriptions; do not edit "
        "by hand. Secrets' defaults are never shown. A key inside a list (`[]`) is set from "
        "the environment only with its whole list, as JSON.",
    ]
    for name, command, model in services:
        lines += [
            "",
            f"### {name}",
            "",
            f"`{command}`",
            "",
            "| Key | Type | Default | Description | Environment |",
            "|---|---|---|---|---|",
            *_rows(model, None, ()),
        ]
    lines += ["", END]
    return "\n".join(lines) + "\n"


def rewrite(document: str) -> str:
    """``document`` with its generated part replaced (or appended when it has none)."""
    begin, end = document.find(BEGIN), document.find(END)
    if begin == -1 and end == -1:
        return document.rstrip("\n") + "\n\n" + reference()
    if begin == -1 or end < begin:
        raise ConfigDocsError(f"the markers {BEGIN!r} and {END!r} are not in order")
    tail = document[end + len(END) :].lstrip("\n")
    return document[:begin] + reference() + ("\n" + tail if tail else "")


def main(argv: Sequence[str] = ()) -> None:
    """Rewrite the reference in docs/configuration.md (or the file given)."""
    path = Path(argv[0]) if argv else DOC_PATH
    try:
        document = path.read_text(encoding="utf-8")
        path.write_text(rewrite(document), encoding="utf-8")
    except (OSError, ConfigDocsError) as exc:
        raise SystemExit(f"cannot write the configuration reference to {path}: {exc}") from None


if __name__ == "__main__":
    main(sys.argv[1:])
