"""The one layer that reads configuration: a TOML file, overlaid by the environment.

Services receive their settings as validated models and never read the environment
themselves. A bad value fails at start-up with :class:`ConfigError`, which names the key
(``mqtt.port``) and the environment variable that would set it.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, TypeVar

from pydantic import ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

ENV_PREFIX = "AEDFLEET_"
ENV_NESTED_DELIMITER = "__"


class ConfigError(Exception):
    """Configuration that cannot be used; the message names the file and key."""


class FileThenEnvSettings(BaseSettings):
    """Base of every service's settings: file values first, environment on top."""

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


def describe_validation_error(error: ValidationError, source: str) -> str:
    lines = []
    for problem in error.errors():
        key = ".".join(str(part) for part in problem["loc"]) or "(root)"
        env_name = ENV_PREFIX + ENV_NESTED_DELIMITER.join(
            str(part).upper() for part in problem["loc"]
        )
        given = problem.get("input")
        omitted = problem["type"] == "missing" or isinstance(given, dict)
        shown = "" if omitted else f" (got {given!r})"
        lines.append(f"  {key}: {problem['msg']}{shown} [env {env_name}]")
    return f"invalid configuration in {source}:\n" + "\n".join(lines)


def load_settings(model: type[SettingsT], path: Path | None) -> SettingsT:
    """Validate ``model`` from the TOML file at ``path`` (optional) and the environment."""
    file_values = read_toml(path) if path else {}
    try:
        return model(**file_values)
    except ValidationError as exc:
        source = f"{path} and the environment" if path else "the environment"
        raise ConfigError(describe_validation_error(exc, source)) from None
