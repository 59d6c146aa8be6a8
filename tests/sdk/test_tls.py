"""paho clients over mutual TLS (`devices.sdk.tls`): verification as `tls_set` does it, and
no socket left open when a handshake fails (a broker killed while a client reconnects)."""

from __future__ import annotations

import gc
import socket
import ssl
import threading
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from devices.keystore import (
    Pki,
    ensure_gateway_client_identity,
    ensure_server_certificate,
    load_or_create_pki,
)
from devices.sdk.tls import client_context, use_mutual_tls
from tests.support.pki import TRUST_DOMAIN


@pytest.fixture
def now() -> datetime:
    return datetime.now(UTC)


@pytest.fixture
def pki(tmp_path: Path, now: datetime) -> Pki:
    return load_or_create_pki(tmp_path / "data", TRUST_DOMAIN, now)


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with socket.create_server(("127.0.0.1", 0)) as server:
        yield server


def serve_once(listener: socket.socket, handle: object) -> threading.Thread:
    def run() -> None:
        conn, _ = listener.accept()
        with conn:
            handle(conn)  # type: ignore[operator]

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def handshake(context: ssl.SSLContext, port: int) -> str:
    """Connect and shake hands with `context`; the peer's certificate subject, or the error."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        try:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                return str((tls.getpeercert() or {})["subject"])
        except ssl.SSLError as exc:
            return f"refused: {exc.reason}"


def resource_warnings_after(action: object) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        action()  # type: ignore[operator]
        gc.collect()
    return [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]


def test_the_client_context_verifies_the_broker_and_presents_its_certificate(
    pki: Pki, now: datetime, listener: socket.socket
) -> None:
    cert, key = ensure_gateway_client_identity(pki, 1, now)
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(*ensure_server_certificate(pki, "127.0.0.1", now))
    server.load_verify_locations(cafile=pki.paths.device_cafile)
    server.verify_mode = ssl.CERT_REQUIRED
    presented: list[object] = []

    def accept(conn: socket.socket) -> None:
        try:
            with server.wrap_socket(conn, server_side=True) as tls:
                presented.append((tls.getpeercert() or {})["subject"])
        except (ssl.SSLError, OSError) as exc:  # the client refused the broker
            presented.append(exc)

    thread = serve_once(listener, accept)
    subject = handshake(client_context(pki.paths.bundle, cert, key), listener.getsockname()[1])
    thread.join(5)

    assert "commonName" in subject  # the broker's certificate, verified against the bundle
    assert isinstance(presented[0], tuple) and presented[0]  # the client's, verified
    other = load_or_create_pki(pki.paths.bundle.parent.parent / "other", TRUST_DOMAIN, now)
    thread = serve_once(listener, accept)
    wrong_ca = client_context(other.paths.bundle, *ensure_gateway_client_identity(other, 1, now))
    assert handshake(wrong_ca, listener.getsockname()[1]) == "refused: CERTIFICATE_VERIFY_FAILED"
    thread.join(5)
    assert isinstance(presented[1], ssl.SSLError | OSError)


def test_a_handshake_cut_off_leaves_no_socket_open(
    pki: Pki, now: datetime, listener: socket.socket
) -> None:
    cert, key = ensure_gateway_client_identity(pki, 1, now)
    port = listener.getsockname()[1]

    def connect(client: mqtt.Client) -> None:
        thread = serve_once(listener, lambda conn: conn.recv(1))  # then closed: no ServerHello
        with pytest.raises((ssl.SSLError, OSError)):
            client.connect("127.0.0.1", port)
        thread.join(5)

    paho_own = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="paho-own")
    paho_own.tls_set(str(pki.paths.bundle), str(cert), str(key), ssl.CERT_REQUIRED)
    ours = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="ours")
    use_mutual_tls(ours, pki.paths.bundle, cert, key)

    leaked = resource_warnings_after(lambda: connect(paho_own))
    assert any("SSLSocket" in message for message in leaked)  # why devices.sdk.tls exists
    assert resource_warnings_after(lambda: connect(ours)) == []
