"""``aedfleet broker``: write Mosquitto's password, ACL and listener files from the
registry, and print the password of one cabinet or service (docs/security.md)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Annotated

import typer

from aedfleet.broker_auth import (
    EMPTY_GENERATIONS,
    SALT_BYTES,
    BrokerAuthError,
    BrokerLayout,
    ServiceAccount,
    acl_text,
    check_secret,
    login_password,
    mosquitto_conf_text,
    parse_generations,
    password_file_text,
)

broker_app = typer.Typer(
    no_args_is_help=True, help="Broker security: Mosquitto's logins, ACL and listeners."
)
SecretFileOption = Annotated[
    Path, typer.Option("--secret-file", help="The provisioning secret (at least 32 bytes)")
]
GenerationsOption = Annotated[
    Path | None,
    typer.Option(
        "--generations-file",
        help="CABINET_ID GENERATION per line: a new password for a cabinet, 0 revokes it",
    ),
]


class ProvisioningFileError(ValueError):
    """A provisioning file (the secret, the generations) that cannot be read or used."""


def read_secret(path: Path) -> bytes:
    """The provisioning secret: the file's bytes without surrounding white space."""
    try:
        secret = path.read_bytes().strip()
    except OSError as exc:
        raise ProvisioningFileError(f"secret file {path}: {exc.strerror or exc}") from None
    try:
        return check_secret(secret)
    except BrokerAuthError as exc:
        raise ProvisioningFileError(f"secret file {path}: {exc}") from None


def read_generations(path: Path | None) -> Mapping[str, int]:
    if path is None:
        return EMPTY_GENERATIONS
    try:
        return parse_generations(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ProvisioningFileError(f"generations file {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, BrokerAuthError) as exc:
        raise ProvisioningFileError(f"generations file {path}: {exc}") from None


def _fail(message: str) -> typer.Exit:
    typer.secho(message, err=True, fg=typer.colors.RED)
    return typer.Exit(code=2)


def _write_atomically(path: Path, text: str, mode: int) -> None:
    """Replace ``path`` whole, so a broker reloading on SIGHUP never reads half a file."""
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)
    descriptor = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(descriptor, "w", encoding="utf-8") as file:
        file.write(text)
    partial.replace(path)


@broker_app.command("config")
def broker_config(
    secret_file: SecretFileOption,
    out: Annotated[Path, typer.Option("--out", help="Folder for passwd, acl, mosquitto.conf")],
    store: Annotated[
        str, typer.Option("--store", help="State store URL (sqlite:///path or postgresql+…)")
    ] = "sqlite:///var/aedfleet.sqlite3",
    config_dir: Annotated[
        str | None,
        typer.Option(help="Where passwd and acl will live on the broker host; default --out"),
    ] = None,
    ca_file: Annotated[str, typer.Option(help="CA certificate")] = "/etc/mosquitto/certs/ca.crt",
    cert_file: Annotated[
        str, typer.Option(help="Server certificate")
    ] = "/etc/mosquitto/certs/server.crt",
    key_file: Annotated[
        str, typer.Option(help="Server private key")
    ] = "/etc/mosquitto/certs/server.key",
    tls_port: Annotated[int, typer.Option(min=1, max=65_535, help="TLS listener")] = 8883,
    tls_bind: Annotated[
        str | None, typer.Option(help="Address of the TLS listener; default every one")
    ] = None,
    local_port: Annotated[
        int, typer.Option(min=0, max=65_535, help="Plain listener on 127.0.0.1; 0 for none")
    ] = 1883,
    generations_file: GenerationsOption = None,
) -> None:
    """Write passwd (Mosquitto 2 hashes), acl and mosquitto.conf for every registry cabinet."""
    from aedfleet.db.state import StateStore, StoreError

    try:
        secret = read_secret(secret_file)
        generations = read_generations(generations_file)
        with StateStore.open(store) as state:
            cabinet_ids = state.cabinet_ids()
        passwords = password_file_text(
            secret, cabinet_ids, lambda: secrets.token_bytes(SALT_BYTES), generations
        )
    except (ProvisioningFileError, StoreError, BrokerAuthError) as exc:
        raise _fail(str(exc)) from None
    layout = BrokerLayout(
        config_dir=PurePosixPath(config_dir or out.resolve()),
        ca_file=PurePosixPath(ca_file),
        cert_file=PurePosixPath(cert_file),
        key_file=PurePosixPath(key_file),
        tls_port=tls_port,
        tls_bind=tls_bind,
        local_port=local_port or None,
    )
    out.mkdir(parents=True, exist_ok=True)
    for name, text, mode in (
        ("passwd", passwords, 0o600),
        ("acl", acl_text(), 0o644),
        ("mosquitto.conf", mosquitto_conf_text(layout), 0o644),
    ):
        _write_atomically(out / name, text, mode)
        typer.echo(f"wrote {out / name}")
    revoked = sum(1 for cabinet_id in cabinet_ids if generations.get(cabinet_id, 1) == 0)
    typer.echo(
        f"{len(cabinet_ids) - revoked} cabinet logins ({revoked} revoked) "
        f"and {len(ServiceAccount)} service accounts"
    )


@broker_app.command("password")
def broker_password(
    login: Annotated[str, typer.Argument(help="A cabinet id, or a service account's name")],
    secret_file: SecretFileOption,
    generations_file: GenerationsOption = None,
) -> None:
    """Print the broker password of one cabinet (for its cabinet.toml) or service."""
    try:
        secret = read_secret(secret_file)
        typer.echo(login_password(secret, login, read_generations(generations_file)))
    except (ProvisioningFileError, BrokerAuthError) as exc:
        raise _fail(str(exc)) from None
