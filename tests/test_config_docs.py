"""docs/configuration.md's reference must be what the settings models say, secrets unshown."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, Field, SecretStr

from aedfleet.settings import FileThenEnvSettings
from aedfleet_app.config_docs import (
    BEGIN,
    DOC_PATH,
    END,
    ConfigDocsError,
    reference,
    rewrite,
    undescribed,
)

REGENERATE = "run `make docs` from the repository root and commit docs/configuration.md"


def test_the_committed_reference_is_what_the_models_say() -> None:
    committed = DOC_PATH.read_text(encoding="utf-8")
    assert BEGIN in committed, f"docs/configuration.md has no generated reference; {REGENERATE}"
    assert rewrite(committed) == committed, (
        f"docs/configuration.md differs from the settings models; {REGENERATE}"
    )


class _Gateway(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    api_key: SecretStr = SecretStr("key-in-a-nested-default")
    url: str = Field(default="https://sms.example.org/send", description="Where pages go")


class _ExampleSettings(FileThenEnvSettings):
    password: SecretStr = SecretStr("top-level-default-secret")
    session_token: str = "a-plain-str-named-like-a-secret"  # noqa: S105 - the point of the test
    gateway: _Gateway = _Gateway()
    port: int = Field(default=8470, ge=0, le=65_535, description="0 = any free port")


def test_secret_defaults_are_never_printed() -> None:
    text = reference([("example", "aedfleet example --config x.toml", _ExampleSettings)])

    for secret in (
        "top-level-default-secret",
        "a-plain-str-named-like-a-secret",
        "key-in-a-nested-default",
    ):
        assert secret not in text
    assert text.count("(secret, not shown)") == 3


def test_a_row_has_key_type_bounds_default_description_and_environment_variable() -> None:
    text = reference([("example", "aedfleet example --config x.toml", _ExampleSettings)])

    assert "| `port` | int (≥ 0, ≤ 65535) | `8470` | 0 = any free port | `AEDFLEET_PORT` |" in text
    assert (
        "| `gateway.url` | string | `https://sms.example.org/send` | Where pages go "
        "| `AEDFLEET_GATEWAY__URL` |"
    ) in text


def test_the_prose_around_the_markers_stays() -> None:
    document = f"# Title\n\nHand-written.\n\n{BEGIN}\nstale\n{END}\n\n## After\n\nMore prose.\n"

    rewritten = rewrite(document)

    assert rewritten.startswith("# Title\n\nHand-written.\n\n" + BEGIN)
    assert "stale" not in rewritten
    assert rewritten.endswith(f"{END}\n\n## After\n\nMore prose.\n")
    assert rewrite(rewritten) == rewritten


def test_markers_out_of_order_are_refused() -> None:
    with pytest.raises(ConfigDocsError):
        rewrite(f"{END}\n{BEGIN}\n")


def test_every_settings_field_has_a_description() -> None:
    missing = undescribed()

    assert not missing, (
        "give these settings fields a Field(description=...) for docs/configuration.md: "
        + ", ".join(missing)
    )


class _Partly(FileThenEnvSettings):
    gateway: _Gateway = Field(default=_Gateway(), description="Where pages go")
    gateways: tuple[_Gateway, ...] = Field(default=(), description="More of them")
    port: int = 8470
    # Another service's settings are checked as that service, not inside this one.
    example: _ExampleSettings = Field(
        default_factory=_ExampleSettings, description="The example service's keys"
    )


def test_a_field_without_a_description_is_named_with_its_key() -> None:
    missing = undescribed([("example", "aedfleet example --config x.toml", _Partly)])

    assert missing == [
        "example: gateway.api_key",
        "example: gateways[].api_key",
        "example: port",
    ]
