"""Fixtures for the embedded broker: a throwaway PKI, a running broker, recording MQTT clients.

The PKI mirrors KYM's: a device root CA signs device certificates (CN = device id) and the
gateway's client certificate; a separate service root signs the broker's server certificate
and a signing certificate; a foreign CA signs nothing we trust.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from gateway.broker import Broker
from tests.broker.kym_brokers import (  # noqa: F401 - fixtures
    dynsec_broker,
    kym_broker,
    mosquitto_broker,
)
from tests.broker.rawmqtt import RawClient
from tests.broker.testpki import Identity, Pki, issue_client, leaf, make_ca, new_key, save
from tests.support.peers import WAIT_S, Peer, broker_config, tls_client_context


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """Every certificate the broker tests need, made once per run."""
    directory = tmp_path_factory.mktemp("pki")
    device_ca = make_ca(directory, "KYM Device Root CA")
    service_ca = make_ca(directory, "KYM Service Root CA")
    foreign_ca = make_ca(directory, "Foreign CA")
    server_key, signing_key = new_key(), new_key()
    server = save(
        directory,
        "server",
        "127.0.0.1",
        server_key,
        leaf(
            service_ca,
            "127.0.0.1",
            server_key,
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
            [ExtendedKeyUsageOID.SERVER_AUTH],
        ),
    )
    signing = save(
        directory,
        "signing",
        "kym-gateway-signing",
        signing_key,
        leaf(
            service_ca,
            "kym-gateway-signing",
            signing_key,
            x509.UniformResourceIdentifier("urn:kym:gateway"),
            None,
        ),
    )
    return Pki(
        dir=directory,
        device_ca=device_ca,
        service_ca=service_ca,
        foreign_ca=foreign_ca,
        server=server,
        signing=signing,
        devices={
            cn: issue_client(directory, device_ca, cn, cn) for cn in ("dev-a", "dev-b", "dev-c")
        },
        gateway=issue_client(directory, device_ca, "kym-gateway-0", "kym-gateway-0"),
        gateway2=issue_client(directory, device_ca, "kym-gateway-1", "kym-gateway-1"),
        service_client=issue_client(directory, service_ca, "dev-a", "service-dev-a"),
        foreign_device=issue_client(directory, foreign_ca, "dev-a", "foreign-dev-a"),
        no_eku_device=issue_client(directory, device_ca, "dev-a", "no-eku-dev-a", usage=None),
    )


@pytest.fixture
def broker(pki: Pki, tmp_path: Path) -> Iterator[Broker]:
    """A running broker with default settings."""
    with Broker(broker_config(pki, tmp_path)) as running:
        yield running


@pytest.fixture
def peers(broker: Broker, pki: Pki) -> Iterator[Callable[..., Peer]]:
    """Make connected paho clients of `broker`; all are closed at the end of the test."""
    made: list[Peer] = []

    def connect(
        identity: Identity | None,
        client_id: str = "",
        clean_session: bool = True,
        accept: bool = True,
    ) -> Peer:
        peer = Peer(broker.port, pki, identity, client_id, clean_session)
        made.append(peer)
        peer.start()
        if accept:
            assert peer.accepted(), f"connection refused: {peer.connack}"
        return peer

    yield connect
    for peer in made:
        peer.close()


@pytest.fixture
def raws(broker: Broker, pki: Pki) -> Iterator[Callable[..., RawClient]]:
    """Open raw TLS MQTT connections to `broker`; all are closed at the end of the test."""
    made: list[RawClient] = []

    def open_raw(identity: Identity | None, timeout_s: float = WAIT_S) -> RawClient:
        client = RawClient(broker.port, tls_client_context(pki, identity), timeout_s)
        made.append(client)
        return client

    yield open_raw
    for client in made:
        client.close()
