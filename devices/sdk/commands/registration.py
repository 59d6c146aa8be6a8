"""`kym device keygen` and `kym device register`: a key, a CSR, a certificate, trust."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import httpx
from cryptography import x509

from devices.sdk.api import GatewayApi, Registration, provision
from devices.sdk.commands.options import (
    BROKER_URL,
    DEFAULT_API,
    DEFAULT_BROKER,
    ENDPOINTS,
    KINDS,
    STATE_DIR,
    Unable,
)
from devices.sdk.errors import ApiError, SdkError
from devices.sdk.identity import (
    KEY_MODE,
    Identity,
    StatePaths,
    generate_key,
    load_private_key,
    make_csr,
    save_private_key,
    write_atomic,
)


@click.command(short_help="Make the device's key and a CSR.")
@STATE_DIR
@click.option(
    "--key-type", type=click.Choice(["p256", "ed25519"]), default="p256", show_default=True
)
@click.option("--name", default="kym-device", show_default=True, help="The CSR's subject CN.")
def keygen(state_dir: Path, key_type: str, name: str) -> None:
    """Make the device's key (never leaves the state dir) and a CSR for it.

    The gateway names the device itself: the CSR only carries the key. A key made with
    openssl works as well (`kym device register --key FILE`).
    """
    paths = StatePaths(state_dir)
    if paths.key.exists():
        raise Unable(f"{paths.key} exists: one key per device (use another --state-dir)")
    key = generate_key("ed25519" if key_type == "ed25519" else "p256")
    save_private_key(paths.key, key)
    csr = csr_path(paths)
    write_atomic(csr, make_csr(key, name).encode())
    click.echo(f"key: {paths.key} (mode 0600)\ncsr: {csr}")


@click.command(short_help="Register the device as its integrator.")
@STATE_DIR
@click.option(
    "--api",
    envvar="KYM_API_URL",
    default=DEFAULT_API,
    show_default=True,
    metavar="URL",
    help="The gateway's HTTP API [env KYM_API_URL].",
)
@click.option(
    "--api-key",
    envvar="KYM_API_KEY",
    required=True,
    help="The integrator's API key [env KYM_API_KEY].",
)
@click.option(
    "--api-ca",
    envvar="KYM_API_CA",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="The CAs to trust for an https API, e.g. GET /v1/ca saved to a file (a gateway run "
    "with --http-tls) [env KYM_API_CA; default the system's].",
)
@click.option("--owner", "owner_id", required=True, help="The owner's id (they approve it).")
@click.option("--kind", type=click.Choice(KINDS), required=True)
@click.option("--manufacturer", required=True)
@click.option("--model", required=True)
@click.option("--serial", "serial_number", required=True, help="Unique per manufacturer.")
@click.option("--category", default=None, help="What it sells when it is paid (e.g. fuel).")
@click.option("--currency", default="EUR", show_default=True, help="Its wallet's currency.")
@click.option(
    "--key",
    "key_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="A P-256 or Ed25519 key in PEM (e.g. from openssl), copied into the state dir "
    "[default: the state dir's key, made by keygen, else a new one].",
)
@click.option(
    "--csr",
    "csr_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="A CSR for that key (e.g. from openssl req) [default: made from the key].",
)
@click.option(
    "--attestation",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help="The manufacturer's certificate chain for this key (PEM, leaf first).",
)
@BROKER_URL
def register(
    state_dir: Path,
    api: str,
    api_key: str,
    api_ca: Path | None,
    key_file: Path | None,
    csr_file: Path | None,
    attestation: Path | None,
    broker_url: str | None,
    **declared: Any,
) -> None:
    """Register the device as its integrator and store its certificate and trust.

    Safe to run again: a state dir that holds an identity is not registered twice (nothing is
    sent; only an endpoint given again is updated).
    """
    paths = StatePaths(state_dir)
    if Identity.exists(paths.root):
        identity = Identity.load(paths.root)
        save_endpoints(state_dir, api, broker_url)
        click.echo(
            f"{state_dir}/ is registered already, as {identity.device_id}: nothing was sent "
            f"(its status now: GET /v1/devices/{identity.device_id})"
        )
        return
    bring_key(paths, key_file)
    csr_pem = csr_file.read_text() if csr_file else None
    if csr_pem is None and csr_path(paths).is_file():
        csr_pem = csr_path(paths).read_text()
    if csr_pem is not None and paths.key.is_file():
        check_csr_holds(csr_pem, paths)
    registration = Registration(
        **declared, attestation=attestation.read_text() if attestation else None
    )
    with reaching(api), GatewayApi(api, api_key, ca_file=api_ca) as gateway:
        identity = provision(state_dir, gateway, registration, csr_pem=csr_pem)
    save_endpoints(state_dir, api, broker_url)
    record = identity.details
    click.echo(
        f"registered {identity.device_id} (status {record['status_at_registration']}, "
        f"attested {str(record['attested']).lower()}); its identity is in {state_dir}/\n"
        f"next: its owner approves it (POST /v1/devices/{identity.device_id}/approve)"
    )


def save_endpoints(state_dir: Path, api: str, broker_url: str | None) -> None:
    """Where the device reaches the gateway: the API given, and the broker given, else the one
    already saved, else the default."""
    path = state_dir / ENDPOINTS
    try:
        saved = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        saved = {}
    broker = broker_url or saved.get("broker") or DEFAULT_BROKER
    write_atomic(path, json.dumps({"api": api, "broker": broker}, indent=2).encode())


def csr_path(paths: StatePaths) -> Path:
    return paths.root / "device.csr"


def bring_key(paths: StatePaths, key_file: Path | None) -> None:
    """Copy `key_file` into the state dir (once); a different key there is an error."""
    if key_file is None:
        return
    try:
        key = load_private_key(key_file)
    except (ValueError, TypeError) as exc:  # TypeError: it wants a password
        raise Unable(f"{key_file} is not an unencrypted P-256 or Ed25519 key in PEM") from exc
    if paths.key.is_file():
        if load_private_key(paths.key).public_key() != key.public_key():
            raise Unable(f"{paths.root} already holds another key: use another --state-dir")
        return
    write_atomic(paths.key, key_file.read_bytes(), KEY_MODE)  # never readable by others


def check_csr_holds(csr_pem: str, paths: StatePaths) -> None:
    try:
        csr = x509.load_pem_x509_csr(csr_pem.encode())
    except ValueError as exc:
        raise Unable("the CSR is not a PEM certificate signing request") from exc
    if csr.public_key() != load_private_key(paths.key).public_key():
        raise Unable(f"the CSR is not for the key in {paths.key}")


@contextmanager
def reaching(api: str) -> Iterator[None]:
    """Turns "the gateway is not there" and "the gateway refused" into one-line errors."""
    try:
        yield
    except ApiError as exc:
        raise click.ClickException(f"the gateway refused: {exc}") from exc
    except httpx.HTTPError as exc:
        raise Unable(f"cannot reach the gateway at {api}: {exc}") from exc
    except SdkError as exc:
        raise Unable(str(exc)) from exc
