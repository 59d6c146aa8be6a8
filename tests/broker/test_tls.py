"""Only certificates from the device CA, with clientAuth and not revoked, get in."""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.x509.oid import ExtendedKeyUsageOID

from gateway.broker import Broker
from tests.broker.rawmqtt import RawClient
from tests.broker.testpki import Identity, Pki
from tests.support.peers import WAIT_S, Peer, broker_config


def refused(broker: Broker, pki: Pki, identity: Identity | None) -> bool:
    """True if a paho client with `identity` never gets an accepted CONNACK.

    With TLS 1.3 the broker's refusal of a client certificate arrives after connect()
    returned, so wait for the outcome rather than expecting an exception.
    """
    peer = Peer(broker.port, pki, identity)
    try:
        peer.start()
        return not peer.accepted()
    except (ssl.SSLError, ConnectionError):
        return True
    finally:
        peer.close()


def test_a_client_without_a_certificate_is_refused(broker: Broker, pki: Pki) -> None:
    assert refused(broker, pki, None)


def test_a_certificate_from_the_service_root_is_refused(broker: Broker, pki: Pki) -> None:
    assert refused(broker, pki, pki.service_client)
    assert refused(broker, pki, pki.signing)


def test_a_certificate_from_a_foreign_ca_is_refused(broker: Broker, pki: Pki) -> None:
    assert refused(broker, pki, pki.foreign_device)


def test_a_device_ca_certificate_without_an_extended_key_usage_is_not_authorized(
    raws: Callable[..., RawClient], pki: Pki
) -> None:
    client = raws(pki.no_eku_device)  # OpenSSL lets it through the handshake; the broker won't
    assert client.connect(client_id="dev-a") == (False, 5)
    assert client.closed_by_broker()


def test_a_device_ca_certificate_for_another_purpose_is_refused(broker: Broker, pki: Pki) -> None:
    signing_only = pki.issue("dev-a", "signing-dev-a", ExtendedKeyUsageOID.CODE_SIGNING)
    assert refused(broker, pki, signing_only)


def test_the_broker_still_serves_after_refusing(
    broker: Broker, pki: Pki, peers: Callable[..., Peer]
) -> None:
    assert refused(broker, pki, pki.foreign_device)
    assert peers(pki.devices["dev-a"]).subscribe("kym/v1/devices/dev-a/results") == 1


def test_kick_ends_a_live_session_and_a_revoked_certificate_is_refused_after_reload(
    pki: Pki, tmp_path: Path
) -> None:
    victim = pki.issue("dev-c", "dev-c-revoked")
    config = broker_config(pki, tmp_path)
    with Broker(config) as broker:
        device = Peer(broker.port, pki, victim).start()
        try:
            assert device.accepted()
            assert config.crlfile is not None
            pki.write_crl(Path(config.crlfile), revoked=(victim.serial,))
            broker.reload_crl()
            assert not device.disconnected.is_set(), "reloading the CRL alone ends no session"
            assert broker.kick("dev-c") is True
            assert device.disconnected.wait(WAIT_S), "kick did not end the session"
        finally:
            device.close()
        assert refused(broker, pki, victim)
        assert not refused(broker, pki, pki.devices["dev-c"]), "only the revoked cert is out"


def test_kick_of_an_unknown_identity_is_false(broker: Broker) -> None:
    assert broker.kick("nobody") is False


def test_start_fails_loudly_when_the_port_is_taken(
    broker: Broker, pki: Pki, tmp_path: Path
) -> None:
    with pytest.raises(OSError):
        Broker(broker_config(pki, tmp_path, port=broker.port)).start()


def test_a_damaged_crl_file_fails_the_reload_and_the_old_one_stays(
    pki: Pki, tmp_path: Path
) -> None:
    config = broker_config(pki, tmp_path)
    with Broker(config) as broker:
        assert config.crlfile is not None
        damaged = b"-----BEGIN X509 CRL-----\nAAAA\n-----END X509 CRL-----\n"
        Path(config.crlfile).write_bytes(damaged)
        with pytest.raises(ValueError):
            broker.reload_crl()
        Path(config.crlfile).write_bytes(b"")
        with pytest.raises(ValueError):
            broker.reload_crl()
        assert not refused(broker, pki, pki.devices["dev-a"])


def test_a_certificate_in_the_crl_file_is_not_trusted(pki: Pki, tmp_path: Path) -> None:
    crlfile = pki.write_crl(tmp_path / "crl.pem")
    crlfile.write_bytes(pki.foreign_ca.path.read_bytes() + crlfile.read_bytes())
    with Broker(broker_config(pki, tmp_path, crlfile=crlfile)) as broker:
        assert refused(broker, pki, pki.foreign_device)
        assert not refused(broker, pki, pki.devices["dev-a"])


def test_stop_closes_live_connections_and_the_listener(pki: Pki, tmp_path: Path) -> None:
    broker = Broker(broker_config(pki, tmp_path))
    broker.start()
    device = Peer(broker.port, pki, pki.devices["dev-a"]).start()
    try:
        assert device.accepted()
        broker.stop()
        assert device.disconnected.wait(WAIT_S)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", broker.port), timeout=WAIT_S).close()
    finally:
        device.close()
        broker.stop()
