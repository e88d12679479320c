"""The dispatch service's secrets: checked when the settings load, before any store opens."""

from __future__ import annotations

import sqlite3
import subprocess
from pathlib import Path

import pytest
from pydantic import ValidationError

from aedfleet.settings import ENV_PREFIX
from aedfleet_testing.commands import AEDFLEET, command_env
from dispatch.config import BearerAuth, HmacAuth


def test_an_hmac_secret_needs_32_bytes() -> None:
    HmacAuth.model_validate({"secret": "k" * 32})
    with pytest.raises(ValidationError, match="at least 32 bytes, this one has 31"):
        HmacAuth.model_validate({"secret": "k" * 31})


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("short-key\n", "at least 32 bytes, this one has 9"),
        ("change-me-change-me-change-me-change-me\n", "holds the example's placeholder"),
        ("\n", "is empty"),
    ],
)
def test_an_hmac_secret_file_is_checked_when_the_settings_load(
    content: str, expected: str, tmp_path: Path
) -> None:
    secret_file = tmp_path / "hmac.key"
    secret_file.write_text(content, encoding="utf-8")

    with pytest.raises(ValidationError, match=expected) as caught:
        HmacAuth(secret_file=secret_file)

    if content.strip():
        assert content.strip() not in str(caught.value)


def test_a_missing_token_file_is_refused_when_the_settings_load(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="cannot read the token file"):
        BearerAuth(token_file=tmp_path / "absent.token")


@pytest.mark.parametrize(
    ("auth", "expected"),
    [
        ('{ kind = "hmac", secret = "only-sixteen-chr" }', "endpoints.0.auth.hmac.secret"),
        (
            '{ kind = "bearer", token = "change-me" }',
            "endpoints.0.auth.token [env AEDFLEET_ENDPOINTS]",
        ),
    ],
)
def test_the_service_refuses_a_weak_secret_before_opening_the_outbox(
    auth: str, expected: str, tmp_path: Path
) -> None:
    outbox = tmp_path / "outbox.sqlite3"
    config = tmp_path / "dispatch.toml"
    config.write_text(
        f'store_url = "sqlite:///{tmp_path / "state.sqlite3"}"\n'
        f'outbox_url = "sqlite:///{outbox}"\n'
        "[mqtt]\nport = 1\n"
        f'[[endpoints]]\nname = "cc"\nurl = "http://127.0.0.1:1/"\nauth = {auth}\n',
        encoding="utf-8",
    )
    environment = {k: v for k, v in command_env().items() if not k.startswith(ENV_PREFIX)}

    result = subprocess.run(
        [AEDFLEET, "dispatch", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=60,
        env=environment,
        check=False,
    )

    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert expected in result.stderr
    assert "only-sixteen-chr" not in result.stderr
    for database in (outbox, tmp_path / "state.sqlite3"):
        if database.exists():
            with sqlite3.connect(database) as connection:
                assert connection.execute("SELECT name FROM sqlite_master").fetchall() == []
