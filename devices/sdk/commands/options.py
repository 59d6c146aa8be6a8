"""What the `kym device` commands share: the state dir, the broker, one-line failures."""

from __future__ import annotations

import json
from pathlib import Path

import click

from devices.sdk.errors import SdkError
from devices.sdk.identity import Identity

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
    help="How long to wait for the broker and the answer, together; a pending approval "
    "waits as long again.",
)


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
