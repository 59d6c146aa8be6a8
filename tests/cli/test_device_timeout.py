"""`kym device`'s `--timeout` bounds the whole command, connecting included: a broker that
accepts the connection and then says nothing does not hold a person for the SDK's default
connect timeout (10 s)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from devices import ca
from devices.keystore import load_or_create_pki
from devices.sdk.identity import StatePaths, generate_key, make_csr, save_private_key, write_atomic
from tests.support.cli import kym
from tests.support.pki import TRUST_DOMAIN

WELL_UNDER_THE_SDK_DEFAULT_S = 8.0  # the SDK's connect timeout is 10 s; 2 s is asked for


def registered_device(state_dir: Path, data_dir: Path) -> None:
    """A device's state dir as `kym device register` leaves it, made offline from a fresh PKI."""
    now = datetime.now(UTC)
    pki = load_or_create_pki(data_dir, TRUST_DOMAIN, now)
    paths = StatePaths(state_dir)
    key = generate_key("p256")
    save_private_key(paths.key, key)
    csr = ca.load_csr(make_csr(key).encode())
    cert = ca.issue_device_certificate(pki.device_issuing, csr, "dev_1", TRUST_DOMAIN, now)
    write_atomic(paths.certificate, cert.public_bytes(serialization.Encoding.PEM))
    write_atomic(paths.ca_chain, pki.paths.device_issuing_cert.read_bytes())
    write_atomic(paths.ca_bundle, pki.paths.bundle.read_bytes())
    write_atomic(paths.gateway_certificate, pki.paths.signer_cert.read_bytes())
    write_atomic(paths.record, json.dumps({"id": "dev_1"}).encode())


@pytest.fixture
def silent_broker() -> Iterator[int]:
    """A TCP port that accepts connections and never answers: no TLS, no MQTT."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as listener:
        yield listener.getsockname()[1]  # the kernel completes the handshakes; nobody reads


@pytest.mark.parametrize(
    "command",
    [
        ("pay", "dev_2", "100"),
        ("hold", "dev_2", "100"),
        ("capture", "pay_1", "100"),
        ("void", "pay_1"),
        ("refund", "pay_1", "100"),
        ("listen",),
    ],
    ids=lambda command: command[0],
)
def test_a_silent_broker_ends_the_command_within_its_timeout_in_one_line(
    tmp_path: Path, silent_broker: int, command: tuple[str, ...]
) -> None:
    registered_device(tmp_path / "car", tmp_path / "data")
    started = time.monotonic()
    completed = kym(
        *("device", *command, "--state-dir", str(tmp_path / "car")),
        *("--broker-url", f"mqtts://127.0.0.1:{silent_broker}", "--timeout", "2"),
        timeout_s=30,
    )
    took_s = time.monotonic() - started
    assert completed.returncode == 2, (completed.returncode, completed.stderr)
    assert took_s < WELL_UNDER_THE_SDK_DEFAULT_S, (took_s, completed.stderr)
    [line] = completed.stderr.strip().splitlines()
    assert line.startswith(f"Error: cannot reach the broker at 127.0.0.1:{silent_broker}: ")
    assert "Traceback" not in completed.stderr
