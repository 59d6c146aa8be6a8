"""`kym device`: a device's life from the command line, built on the device SDK.

    keygen    make a key and a CSR in the state dir (or bring your own from openssl)
    register  register the key as the integrator (POST /v1/devices) and store the identity
    pay/hold  sign, journal and send an order as the device; print the verified result
    sign      print a signed order without sending it (for mosquitto_rr and friends)
    listen    print every verified result and event addressed to the device

Everything a device has lives in its state dir (`devices.sdk.identity`), plus
`endpoints.json`: the API and broker addresses given at registration, used from then on.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
import httpx
from cryptography import x509

from devices.sdk import messages
from devices.sdk.api import GatewayApi, Registration, provision
from devices.sdk.client import DeviceClient
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
from devices.sdk.messages import Event, Result

DEFAULT_API = "http://127.0.0.1:8080"
DEFAULT_BROKER = "mqtts://127.0.0.1:8883"
ENDPOINTS = "endpoints.json"
KINDS = ["car", "fridge", "fuel_pump", "ev_charger", "parking_meter", "smart_meter", "other"]
SETTLED = {"approved", "captured", "voided", "refunded"}  # final and not a refusal


class Unable(click.ClickException):
    """The command could not do its work (no identity, no gateway): exit 2. A refused order is
    exit 1; an accepted one, 0."""

    exit_code = 2


STATE_DIR = click.option(
    "--state-dir",
    envvar="KYM_DEVICE_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("./kym-device"),
    show_default=True,
    help="The device's own files: key, certificate, trust, journal [env KYM_DEVICE_DIR].",
)
BROKER_URL = click.option(
    "--broker-url",
    envvar="KYM_DEVICE_BROKER_URL",
    default=None,
    metavar="mqtts://HOST:PORT",
    help="The broker [env KYM_DEVICE_BROKER_URL; default: as given at registration, "
    f"else {DEFAULT_BROKER}].",
)
TIMEOUT = click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=30.0,
    show_default=True,
    metavar="SECONDS",
    help="How long to wait for each answer (a pending approval waits as long again).",
)


@click.group()
def device() -> None:
    """Be a device: make a key, register it, pay and listen, over the device SDK.

    Reads KYM_DEVICE_DIR, KYM_API_URL, KYM_API_KEY and KYM_DEVICE_BROKER_URL.
    """
    if not click.get_current_context().find_root().params.get("verbose"):
        logging.getLogger("kym.sdk").setLevel(logging.WARNING)  # the commands say what matters


@device.command()
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


@device.command()
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
    key_file: Path | None,
    csr_file: Path | None,
    attestation: Path | None,
    broker_url: str | None,
    **declared: Any,
) -> None:
    """Register the device as its integrator and store its certificate and trust.

    Safe to run again: a state dir that holds an identity is not registered twice.
    """
    paths = StatePaths(state_dir)
    bring_key(paths, key_file)
    csr_pem = csr_file.read_text() if csr_file else None
    if csr_pem is None and csr_path(paths).is_file():
        csr_pem = csr_path(paths).read_text()
    if csr_pem is not None and paths.key.is_file():
        check_csr_holds(csr_pem, paths)
    registration = Registration(
        **declared, attestation=attestation.read_text() if attestation else None
    )
    with reaching(api), GatewayApi(api, api_key) as gateway:
        identity = provision(state_dir, gateway, registration, csr_pem=csr_pem)
    endpoints = {"api": api, "broker": broker_url or DEFAULT_BROKER}
    write_atomic(state_dir / ENDPOINTS, json.dumps(endpoints, indent=2).encode())
    record = identity.details
    click.echo(
        f"registered {identity.device_id} (status {record['status_at_registration']}, "
        f"attested {str(record['attested']).lower()}); its identity is in {state_dir}/\n"
        f"next: its owner approves it (POST /v1/devices/{identity.device_id}/approve)"
    )


@device.command()
@STATE_DIR
@BROKER_URL
@TIMEOUT
@click.argument("payee")
@click.argument("amount", type=click.IntRange(min=1))
@click.option("--currency", default="EUR", show_default=True)
@click.option("--description", default=None)
def pay(
    state_dir: Path,
    broker_url: str | None,
    timeout_s: float,
    payee: str,
    amount: int,
    currency: str,
    description: str | None,
) -> None:
    """Pay AMOUNT (minor units: 450 is 4.50) to PAYEE now; print the verified result.

    Exit 0 when approved, 1 when declined or rejected, 2 when no answer came.
    """
    fields = messages.pay_fields(payee, amount, currency, description)
    send_and_show(state_dir, broker_url, fields, timeout_s)


@device.command()
@STATE_DIR
@BROKER_URL
@TIMEOUT
@click.argument("payee")
@click.argument("amount", type=click.IntRange(min=1))
@click.option("--currency", default="EUR", show_default=True)
@click.option(
    "--expires-in",
    "expires_in_s",
    type=click.IntRange(60, 86400),
    default=None,
    metavar="SECONDS",
    help="When the hold lapses unless captured [the gateway's default: 900].",
)
@click.option("--description", default=None)
def hold(
    state_dir: Path,
    broker_url: str | None,
    timeout_s: float,
    payee: str,
    amount: int,
    currency: str,
    expires_in_s: int | None,
    description: str | None,
) -> None:
    """Reserve up to AMOUNT (minor units) for PAYEE, who captures or voids it.

    Exit 0 when approved, 1 when declined or rejected, 2 when no answer came.
    """
    fields = messages.hold_fields(payee, amount, currency, expires_in_s, description)
    send_and_show(state_dir, broker_url, fields, timeout_s)


@device.command()
@STATE_DIR
@click.argument("payee")
@click.argument("amount", type=click.IntRange(min=1))
@click.option("--currency", default="EUR", show_default=True)
@click.option("--description", default=None)
def sign(state_dir: Path, payee: str, amount: int, currency: str, description: str | None) -> None:
    """Print a signed `pay` order (compact JWS) without sending or journaling it.

    For sending it yourself, e.g. with `mosquitto_rr -V 311 ... -m "$(kym device sign ...)"`;
    sending it again is safe (the gateway answers a replay with the first answer).
    """
    identity = load_identity(state_dir)
    client = DeviceClient(identity, "unused")  # never connected: it only signs
    try:
        order = client.prepare(messages.pay_fields(payee, amount, currency, description))
    finally:
        client.close()
    click.echo(order.jws)


@device.command()
@STATE_DIR
@BROKER_URL
@click.option("--count", type=int, default=None, help="Stop after this many messages.")
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Stop when nothing arrived for this long [listen until Ctrl-C].",
)
def listen(
    state_dir: Path, broker_url: str | None, count: int | None, timeout_s: float | None
) -> None:
    """Print every verified result and event for the device, one JSON object a line.

    It holds the device's MQTT session (the client id is the certificate's identity): a
    second connection with the same certificate, such as `kym device pay`, ends it.
    """
    arrived = threading.Semaphore(0)

    def show(item: Result | Event) -> None:
        click.echo(json.dumps(item.payload, sort_keys=True))
        arrived.release()

    # The callbacks are in place before the session resumes: what waited there comes first.
    client = connected(state_dir, broker_url, on_result=show, on_event=show)
    click.echo(f"{client.device_id} listening on {broker_url or broker_of(state_dir)}", err=True)
    seen = 0
    try:
        while count is None or seen < count:
            if not arrived.acquire(timeout=timeout_s):
                break
            seen += 1
    except KeyboardInterrupt:
        pass
    finally:
        client.close()


def send_and_show(
    state_dir: Path, broker_url: str | None, fields: dict[str, Any], timeout_s: float
) -> None:
    """Send one order; print its results as they come; exit by the final one."""
    client = connected(state_dir, broker_url)
    try:
        order_id = client.send(fields)
        click.echo(f"sent {fields['type']} order {order_id} (journaled in {state_dir}/)", err=True)
        result = client.wait_for_result(order_id, timeout_s, final=False)
        if not result.is_final:
            click.echo(f"{result.status}: waiting for the owner to decide", err=True)
            result = client.wait_for_result(order_id, timeout_s, final=True)
    except SdkError as exc:
        raise Unable(f"{exc}; the order stays journaled and is re-sent next time") from exc
    finally:
        client.close()
    click.echo(
        f"{headline(result)} (signature verified with {StatePaths(state_dir).gateway_certificate})"
    )
    click.echo(json.dumps(result.payload, indent=2, sort_keys=True))
    sys.exit(0 if result.status in SETTLED else 1)


def headline(result: Result) -> str:
    """What a person reads first: the status, its reason, the payment."""
    words = [str(result.status), result.reason or ""]
    if result.payment_id:
        words.append(f"payment {result.payment_id}")
    return " ".join(word for word in words if word)


def connected(state_dir: Path, broker_url: str | None, **options: Any) -> DeviceClient:
    """The device's SDK client (`options` as for DeviceClient), connected and subscribed."""
    host, port = split_broker(broker_url or broker_of(state_dir))
    client = DeviceClient(load_identity(state_dir), host, port, **options)
    try:
        client.connect()
    except SdkError as exc:
        client.close()
        raise Unable(f"cannot reach the broker at {host}:{port}: {exc}") from exc
    return client


def load_identity(state_dir: Path) -> Identity:
    try:
        return Identity.load(state_dir)
    except SdkError as exc:
        raise Unable(f"no registered device: {exc} (run `kym device register` first)") from exc


def broker_of(state_dir: Path) -> str:
    """The broker given at registration, else the default."""
    path = state_dir / ENDPOINTS
    return str(json.loads(path.read_text())["broker"]) if path.is_file() else DEFAULT_BROKER


def split_broker(url: str) -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.scheme not in ("mqtts", "ssl", "tls") or not parts.hostname:
        raise click.BadParameter("must look like mqtts://HOST:PORT", param_hint="--broker-url")
    return parts.hostname, parts.port or 8883


def csr_path(paths: StatePaths) -> Path:
    return paths.root / "device.csr"


def bring_key(paths: StatePaths, key_file: Path | None) -> None:
    """Copy `key_file` into the state dir (once); a different key there is an error."""
    if key_file is None:
        return
    try:
        key = load_private_key(key_file)
    except ValueError as exc:
        raise Unable(f"{key_file}: {exc}") from exc
    if paths.key.is_file():
        if load_private_key(paths.key).public_key() != key.public_key():
            raise Unable(f"{paths.root} already holds another key: use another --state-dir")
        return
    paths.root.mkdir(mode=0o700, parents=True, exist_ok=True)
    shutil.copyfile(key_file, paths.key)
    paths.key.chmod(KEY_MODE)


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
