"""The one layer that reads configuration: a TOML file, overlaid by the environment.

Services receive their settings as validated models and never read the environment
themselves. A bad value fails at start-up with :class:`ConfigError`, whose message is one
line naming the key (``mqtt.port``) and the environment variable that would set it.

Secrets are checked here too, before a service opens anything: a value still holding an
example's placeholder (:func:`is_placeholder`) is refused wherever it sits, and a key that
signs (:data:`SigningKey`) needs :data:`MIN_SIGNING_KEY_BYTES`. Messages never show a
secret's value, even a wrongly typed one.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
import types
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Final, TypeVar, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, SecretStr, ValidationError, model_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

from aedfleet.redact import redact_url

ENV_PREFIX = "AEDFLEET_"
ENV_NESTED_DELIMITER = "__"
MIN_SIGNING_KEY_BYTES: Final = 32
_PLACEHOLDER: Final = re.compile(r"change[-_ ]?me", re.IGNORECASE)
# Keys whose values are secrets by name, whatever their type (a wrongly typed secret is
# still a secret).
_SECRET_NAME: Final = re.compile(r"secret|password|token|credential", re.IGNORECASE)
_Loc = tuple[int | str, ...]


class ConfigError(Exception):
    """Configuration that cannot be used; the message (one line) names the file and key."""


def is_placeholder(secret: str) -> bool:
    """Whether ``secret`` still holds an example's placeholder (``change-me…``): the one
    rule, for secrets in the settings and in secret files alike."""
    return _PLACEHOLDER.search(secret) is not None


def check_signing_key(secret: str) -> None:
    """Raise ValueError unless ``secret`` is long enough to sign with."""
    size = len(secret.encode())
    if size < MIN_SIGNING_KEY_BYTES:
        raise ValueError(
            f"a signing secret needs at least {MIN_SIGNING_KEY_BYTES} bytes, this one has "
            f"{size} (python -c 'import secrets; print(secrets.token_hex(32))')"
        )


def _strong_enough(key: SecretStr) -> SecretStr:
    check_signing_key(key.get_secret_value())
    return key


SigningKey = Annotated[SecretStr, AfterValidator(_strong_enough)]
"""An HMAC key: a secret of at least :data:`MIN_SIGNING_KEY_BYTES` bytes."""


def _model_class(annotation: object) -> type[BaseModel] | None:
    """The settings section a field holds (``X`` or ``X | None``), if it is one."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType):
        sections = [arg for arg in get_args(annotation) if _model_class(arg) is not None]
        if len(sections) == 1:
            return _model_class(sections[0])
    return None


def _laid_over_defaults(
    model: type[BaseModel], given: Mapping[str, Any], default: BaseModel | None
) -> dict[str, Any]:
    """``given`` (a table of the file or the environment) laid over ``default``.

    A field whose default is a configured section (``write_retry = BackoffSettings(
    initial_s=0.5, max_s=30)``) keeps the keys of that default that the table leaves
    out: ``[write_retry] max_s = 60`` means initial_s 0.5, as the reference documents,
    not the section class's own 1.0. A section class that sets ``replaced_whole`` (an
    escalation policy, whose unset ``repeat_every`` means "no repeats") is taken as
    written instead.
    """
    values: dict[str, Any] = (
        {} if default is None else {name: getattr(default, name) for name in model.model_fields}
    )
    for key, value in given.items():
        field = model.model_fields.get(key)
        if field is None or not isinstance(value, Mapping):
            values[key] = value
            continue
        section = _model_class(field.annotation)
        inner = getattr(default, key) if default is not None else field.default
        # Only under a field of one section class: a table may pick another kind of a union.
        if type(inner) is not section or getattr(section, "replaced_whole", False):
            inner = None
        values[key] = value if section is None else _laid_over_defaults(section, value, inner)
    return values


class FileThenEnvSettings(BaseSettings):
    """Base of every service's settings: file values first, environment on top; a table
    given for a section keeps the documented defaults of the keys it leaves out."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTED_DELIMITER,
        extra="forbid",
        frozen=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file arrives as init values; the environment overrides it key by key.
        return (env_settings, init_settings)

    @model_validator(mode="before")
    @classmethod
    def _keep_section_defaults(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            return _laid_over_defaults(cls, data, None)
        return data


SettingsT = TypeVar("SettingsT", bound=FileThenEnvSettings)


def read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as file:
            return tomllib.load(file)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"config file {path} cannot be read: {exc.strerror}") from None


def env_name(loc: Sequence[int | str]) -> str:
    """The environment variable that sets the key at ``loc``; a list is set as a whole."""
    parts: list[str] = []
    for part in loc:
        if isinstance(part, int):
            break
        parts.append(part.upper())
    return ENV_PREFIX + ENV_NESTED_DELIMITER.join(parts)


def _members(annotation: Any) -> Iterator[Any]:
    """The types an annotation may hold: unions and ``Annotated`` taken apart."""
    origin = get_origin(annotation)
    if origin is Annotated:
        yield from _members(get_args(annotation)[0])
    elif origin is Union or origin is types.UnionType:
        for member in get_args(annotation):
            yield from _members(member)
    else:
        yield annotation


def _holds_secret(annotation: Any) -> bool:
    """Whether a value of this type is or contains a SecretStr (not looking into models)."""
    for member in _members(annotation):
        if member is SecretStr:
            return True
        if any(_holds_secret(argument) for argument in get_args(member) if argument is not ...):
            return True
    return False


def _step(annotation: Any, part: int | str) -> list[Any]:
    """The annotations one ``loc`` part down from ``annotation``."""
    found: list[Any] = []
    for member in _members(annotation):
        if isinstance(member, type) and issubclass(member, BaseModel):
            fields = {
                key: field.annotation
                for name, field in member.model_fields.items()
                for key in (name, field.alias)
                if key
            }
            # A part that names no field is a union's tag ("hmac"): stay on the model.
            found.append(fields.get(str(part), member))
        elif (origin := get_origin(member)) in (tuple, list, set, frozenset) and isinstance(
            part, int
        ):
            found += [argument for argument in get_args(member) if argument is not ...]
        elif origin is dict and isinstance(part, str):
            found.append(get_args(member)[1])
    return found


def is_secret_key(model: type[BaseModel], loc: Sequence[int | str]) -> bool:
    """Whether the value at ``loc`` of ``model`` is (part of) a secret."""
    if any(isinstance(part, str) and _SECRET_NAME.search(part) for part in loc):
        return True
    annotations: list[Any] = [model]
    for part in loc:
        if any(member is SecretStr for a in annotations for member in _members(a)):
            return True
        annotations = [found for a in annotations for found in _step(a, part)]
    return any(_holds_secret(annotation) for annotation in annotations)


def _shown(given: object) -> str:
    """The wrong value as the message shows it: scalars only, URLs without credentials."""

    def show(value: object) -> object:
        return redact_url(value) if isinstance(value, str) and "://" in value else value

    scalars = (str, int, float, bool)
    if isinstance(given, scalars):
        return f" (got {show(given)!r})"
    if isinstance(given, list | tuple) and all(isinstance(item, scalars) for item in given):
        return f" (got {[show(item) for item in given]!r})"
    return ""


def describe_problems(
    error: ValidationError, model: type[BaseModel], *, with_env: bool = False
) -> str:
    """Every problem of ``error`` on one line, each naming its key; secrets never shown."""
    errors = error.errors()
    # pydantic also calls a list too short when one of its items failed: that is noise.
    failed_items = {problem["loc"][:-1] for problem in errors if problem["loc"]}
    problems = []
    for problem in errors:
        loc = problem["loc"]
        if problem["type"] == "too_short" and loc in failed_items:
            continue
        key = ".".join(str(part) for part in loc)
        given = problem.get("input")
        shown = ""
        if problem["type"] != "missing":
            shown = " (got a secret, not shown)" if is_secret_key(model, loc) else _shown(given)
        env = f" [env {env_name(loc)}]" if with_env and loc else ""
        message = problem["msg"].removeprefix("Value error, ")
        problems.append(f"{key}: {message}{shown}{env}" if loc else f"{message}{shown}")
    return "; ".join(problems)


def describe_validation_error(error: ValidationError, source: str, model: type[BaseModel]) -> str:
    return f"invalid configuration in {source}: {describe_problems(error, model, with_env=True)}"


def _secrets_in(value: object, loc: _Loc) -> Iterator[tuple[_Loc, str]]:
    """Every secret in a validated value, with where it sits."""
    if isinstance(value, SecretStr):
        yield loc, value.get_secret_value()
    elif isinstance(value, BaseModel):
        for name, field in type(value).model_fields.items():
            yield from _secrets_in(getattr(value, name), (*loc, field.alias or name))
    elif isinstance(value, Mapping):
        for key, item in value.items():
            yield from _secrets_in(item, (*loc, str(key)))
    elif isinstance(value, tuple | list | set | frozenset):
        for index, item in enumerate(value):
            yield from _secrets_in(item, (*loc, index))


def refuse_placeholders(settings: BaseModel, source: str) -> None:
    """Raise ConfigError naming every secret that still holds a placeholder."""
    found = [loc for loc, secret in _secrets_in(settings, ()) if is_placeholder(secret)]
    if found:
        keys = ", ".join(
            f"{'.'.join(str(part) for part in loc)} [env {env_name(loc)}]" for loc in found
        )
        raise ConfigError(
            f"refusing to start with the example's placeholder secret in {source}: {keys}; "
            "replace each change-me value with a real secret"
        )


def _unparsable_environment(error: SettingsError) -> str:
    """Which variable pydantic-settings could not parse as JSON, and why (not its value)."""
    cause = error.__cause__
    if not isinstance(cause, json.JSONDecodeError):
        return f"invalid configuration in the environment: {error}"
    names = sorted(
        name
        for name, value in os.environ.items()
        if name.upper().startswith(ENV_PREFIX) and value == cause.doc
    )
    named = " or ".join(names) or "an AEDFLEET_* variable"
    return (
        f"invalid configuration in the environment: {named} is not valid JSON "
        f"({cause.msg} at column {cause.colno}); lists and tables are given as JSON there"
    )


def load_settings(model: type[SettingsT], path: Path | None) -> SettingsT:
    """Validate ``model`` from the TOML file at ``path`` (optional) and the environment,
    refusing placeholder secrets; raises :class:`ConfigError` (one line)."""
    file_values = read_toml(path) if path else {}
    source = f"{path} and the environment" if path else "the environment"
    try:
        settings = model(**file_values)
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc, source, model)) from None
    except SettingsError as exc:
        raise ConfigError(_unparsable_environment(exc)) from None
    refuse_placeholders(settings, source)
    return settings
