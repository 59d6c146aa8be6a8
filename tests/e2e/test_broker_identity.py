"""Know your machine at the broker: only certified devices get in, and each only to its topics.

Every test runs against a real Mosquitto started on a free port and against the embedded broker.
"""

from __future__ import annotations

import contextlib
import queue
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import CertificateSigningRequestBuilder, Name, NameAttribute
from cryptography.x509.oid import NameOID

from devices import ca
from gateway.mqtt.client import Inbound
from tests.support.stack import Session, Stack

ORDERS = "kym/v1/devices/{}/orders"
RESULTS = "kym/v1/devices/{}/results"


def drain(inbox: queue.Queue[Inbound], seconds: float) -> list[Inbound]:
    got, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(queue.Empty):
            got.append(inbox.get(timeout=0.05))
    return got


def wait_for(predicate: object, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_openssl_device_connects_with_mosquitto_clients(stack: Stack) -> None:
    device = stack.device("car")
    tls = [
        "-h",
        "127.0.0.1",
        "-p",
        str(stack.port),
        "--cafile",
        str(stack.ctx.pki.paths.bundle),
        "--cert",
        str(device.cert),
        "--key",
        str(device.key),
    ]
    pub = subprocess.run(
        ["mosquitto_pub", *tls, "-t", ORDERS.format(device.id), "-m", "hello", "-q", "1"],
        capture_output=True,
        text=True,
        timeout=10,
    )
    assert pub.returncode == 0, pub.stderr
    arrived = drain(stack.gateway_inbox, 2)
    assert [(m.topic, m.payload) for m in arrived] == [(ORDERS.format(device.id), b"hello")]
    # one identity, one session: the subscriber connects after the publisher has left
    sub = subprocess.Popen(
        ["mosquitto_sub", *tls, "-t", RESULTS.format(device.id), "-C", "1", "-W", "10", "-q", "1"],
        stdout=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.7)
    stack_gateway_publish(stack, RESULTS.format(device.id), b"your result")
    out, _ = sub.communicate(timeout=15)
    assert out.strip() == "your result"


def test_client_without_certificate_is_refused(stack: Stack) -> None:
    session = Session.open(stack, None, None, "anonymous")
    assert not session.is_up
    session.close()


def test_service_root_certificate_is_refused(stack: Stack) -> None:
    paths = stack.ctx.pki.paths
    session = Session.open(stack, paths.signer_cert, paths.signer_key, "kym-gateway-signer")
    assert not session.is_up
    session.close()


def test_foreign_ca_certificate_is_refused(stack: Stack, tmp_path: Path) -> None:
    now = datetime.now(UTC)
    foreign = ca.create_issuing_ca(ca.create_root_ca("Evil Root", now, 1), "Evil CA", now)
    key = ca.new_private_key()
    csr = (
        CertificateSigningRequestBuilder()
        .subject_name(Name([NameAttribute(NameOID.COMMON_NAME, "x")]))
        .sign(key, hashes.SHA256())
    )
    victim = stack.device("victim")
    cert = ca.issue_device_certificate(foreign, csr, victim.id, "kym.local", now)
    (tmp_path / "evil.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "evil.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    session = Session.open(stack, tmp_path / "evil.crt", tmp_path / "evil.key", victim.id)
    assert not session.is_up
    session.close()


def test_device_cannot_publish_to_another_devices_orders(stack: Stack) -> None:
    a, b = stack.device("a"), stack.device("b")
    session = a.connect()
    assert session.is_up
    session.publish(ORDERS.format(b.id), b"forged")
    session.publish(ORDERS.format(a.id), b"mine")
    arrived = drain(stack.gateway_inbox, 1.5)
    assert [m.topic for m in arrived] == [ORDERS.format(a.id)]
    session.close()


@pytest.mark.parametrize(
    "pattern",
    ["kym/v1/devices/{b}/results", "kym/v1/devices/+/results", "#", "kym/#", "+/+/+/{b}/results"],
)
def test_device_cannot_read_another_devices_results(stack: Stack, pattern: str) -> None:
    a, b = stack.device("a"), stack.device("b")
    spy, owner_b = a.connect(), b.connect()
    spy.subscribe(pattern.format(b=b.id))
    owner_b.subscribe(RESULTS.format(b.id))
    stack_gateway_publish(stack, RESULTS.format(b.id), b"secret result")
    assert wait_for(lambda: owner_b.messages)
    time.sleep(0.3)
    assert spy.messages == []
    spy.close()
    owner_b.close()


def test_will_message_cannot_reach_another_device(stack: Stack) -> None:
    a, b = stack.device("a"), stack.device("b")
    listener = b.connect()
    listener.subscribe(RESULTS.format(b.id))
    evil = a.connect(will=(RESULTS.format(b.id), b"will"))
    evil2 = a.connect(client_id="a-2", will=(ORDERS.format(b.id), b"will-order"))
    for session in (evil, evil2):
        sock = session.client.socket()  # None once the broker has dropped it meanwhile
        if sock is not None:  # drop the socket without DISCONNECT so the broker sends the will
            sock.close()
    time.sleep(1.0)
    assert listener.messages == []
    assert all(m.topic != ORDERS.format(b.id) for m in drain(stack.gateway_inbox, 0.5))
    listener.close()


def test_client_claiming_anothers_client_id_does_not_disturb_it(stack: Stack) -> None:
    a, b = stack.device("a"), stack.device("b")
    session_b = b.connect()
    session_b.subscribe(RESULTS.format(b.id))
    intruder = a.connect(client_id=b.id)
    time.sleep(0.5)
    assert session_b.is_up
    stack_gateway_publish(stack, RESULTS.format(b.id), b"still yours")
    assert wait_for(lambda: session_b.messages)
    assert intruder.messages == []
    intruder.close()
    session_b.close()


def test_revocation_refuses_new_connections_and_ends_the_live_session(stack: Stack) -> None:
    device = stack.device("car")
    live = device.connect()
    assert live.is_up
    started = time.monotonic()
    assert device.act("revoke").json()["status"] == "revoked"
    assert live.disconnected.wait(5), "the live session survived revocation"
    elapsed = time.monotonic() - started
    print(f"revocation ended the live session after {elapsed * 1000:.0f} ms")
    again = device.connect()
    assert not again.is_up
    again.close()
    live.client.loop_stop()


def stack_gateway_publish(stack: Stack, topic: str, payload: bytes) -> None:
    """Publish as the gateway (its identity may write every results topic)."""
    from devices import keystore
    from gateway.context import utcnow

    cert, key = keystore.ensure_gateway_client_identity(stack.ctx.pki, 1, utcnow())
    session = Session.open(stack, cert, key, "kym-gateway-1")
    assert session.is_up
    session.client.publish(topic, payload, qos=1).wait_for_publish(5)
    session.close()
