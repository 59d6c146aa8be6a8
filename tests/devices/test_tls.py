"""The keystore's files configure a mutual-TLS broker the way Mosquitto does (OpenSSL, CRL check).

The server side stands in for Mosquitto: `cafile` = device-cafile.pem, `crlfile` = device.crl
(checked for the client certificate's issuer), `require_certificate true`.
"""

from __future__ import annotations

import socket
import ssl
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from devices import ca
from devices.crl import build_crl
from devices.keystore import (
    Pki,
    ensure_gateway_client_identity,
    ensure_server_certificate,
    load_or_create_pki,
    write_crl,
)
from tests.support.openssl import openssl_csr, write_pem
from tests.support.pki import TRUST_DOMAIN


@pytest.fixture
def pki(tmp_path: Path, now: datetime) -> Pki:
    return load_or_create_pki(tmp_path / "data", TRUST_DOMAIN, now)


def broker_context(pki: Pki, now: datetime) -> ssl.SSLContext:
    cert_path, key_path = ensure_server_certificate(pki, "127.0.0.1", now)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_path, key_path)
    context.load_verify_locations(cafile=pki.paths.device_cafile)
    context.load_verify_locations(cafile=pki.paths.crl)
    context.verify_mode = ssl.CERT_REQUIRED
    context.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return context


def client_context(pki: Pki, cert_path: Path, key_path: Path) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=pki.paths.bundle)
    context.load_cert_chain(cert_path, key_path)
    return context


def server_refusal(server: ssl.SSLContext, client: ssl.SSLContext) -> str | None:
    """Why the server side refuses a handshake with this client, or None if it accepts it."""
    server_sock, client_sock = socket.socketpair()
    outcome: list[str | None] = []

    def serve() -> None:
        with server.wrap_socket(
            server_sock, server_side=True, do_handshake_on_connect=False
        ) as tls:
            try:
                tls.do_handshake()
                outcome.append(None if tls.getpeercert() else "no peer certificate")
            except (ssl.SSLError, OSError) as exc:
                outcome.append(str(exc))

    thread = threading.Thread(target=serve)
    server_sock.settimeout(10)
    client_sock.settimeout(10)
    thread.start()
    try:
        with client.wrap_socket(client_sock, server_hostname="127.0.0.1") as tls:
            tls.do_handshake()
    except (ssl.SSLError, OSError):
        pass  # the server's verdict is what counts
    thread.join(10)
    assert len(outcome) == 1, "the server side did not finish"
    return outcome[0]


def device_identity(pki: Pki, workdir: Path, algorithm: str, now: datetime) -> tuple[Path, Path]:
    csr = ca.load_csr(openssl_csr(workdir, algorithm))
    cert = ca.issue_device_certificate(pki.device_issuing, csr, "dev_1", TRUST_DOMAIN, now)
    return write_pem(workdir / f"{algorithm}.crt", cert), workdir / f"{algorithm}.key"


@pytest.mark.parametrize("algorithm", ["p256", "ed25519"])
def test_broker_accepts_a_device(pki: Pki, tmp_path: Path, now: datetime, algorithm: str) -> None:
    cert_path, key_path = device_identity(pki, tmp_path, algorithm, now)
    assert None is server_refusal(
        broker_context(pki, now), client_context(pki, cert_path, key_path)
    )


def test_broker_accepts_the_gateway_client(pki: Pki, now: datetime) -> None:
    cert_path, key_path = ensure_gateway_client_identity(pki, 0, now)
    assert None is server_refusal(
        broker_context(pki, now), client_context(pki, cert_path, key_path)
    )


def test_broker_refuses_a_revoked_device(pki: Pki, tmp_path: Path, now: datetime) -> None:
    cert_path, key_path = device_identity(pki, tmp_path, "p256", now)
    serial = x509.load_pem_x509_certificate(cert_path.read_bytes()).serial_number
    write_crl(pki, build_crl(pki.device_issuing, [(serial, now)], crl_number=1, now=now))
    refusal = server_refusal(broker_context(pki, now), client_context(pki, cert_path, key_path))
    assert refusal is not None and "certificate revoked" in refusal


def test_broker_refuses_the_signer_certificate_as_a_client(
    pki: Pki, tmp_path: Path, now: datetime
) -> None:
    key_path = tmp_path / "signer.key"
    key_path.write_bytes(
        pki.signer.private_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    client = client_context(pki, pki.paths.signer_cert, key_path)
    refusal = server_refusal(broker_context(pki, now), client)
    # The client sends its chain up to the service root, which the broker does not trust.
    assert refusal is not None and "self-signed certificate in certificate chain" in refusal


def test_an_expired_crl_locks_every_device_out(pki: Pki, tmp_path: Path, now: datetime) -> None:
    # Why the gateway must rewrite device.crl before its next_update (7 days by default).
    cert_path, key_path = device_identity(pki, tmp_path, "p256", now)
    stale = build_crl(
        pki.device_issuing, [], 1, now - timedelta(days=8), next_update=now - timedelta(days=1)
    )
    write_crl(pki, stale)
    refusal = server_refusal(broker_context(pki, now), client_context(pki, cert_path, key_path))
    assert refusal is not None and "CRL has expired" in refusal
