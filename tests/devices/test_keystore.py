"""The keystore creates the CA material once, with private modes, and loads it afterwards."""

from __future__ import annotations

import ipaddress
import stat
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from devices.crl import build_crl
from devices.errors import KeystoreDamaged
from devices.keystore import (
    Pki,
    ensure_gateway_client_identity,
    ensure_server_certificate,
    load_crl,
    load_or_create_pki,
    write_crl,
)
from tests.support.openssl import openssl, openssl_ok
from tests.support.pki import TRUST_DOMAIN

CA_FILES = {
    "device-root.crt", "device-root.key", "device-issuing.crt", "device-issuing.key",
    "service-root.crt", "service-root.key", "signer.crt", "signer.key",
    "bundle.pem", "device-cafile.pem", "device.crl",
}  # fmt: skip


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def subjects(pem_path: Path) -> list[str]:
    certificates = x509.load_pem_x509_certificates(pem_path.read_bytes())
    return [c.subject.rfc4514_string() for c in certificates]


def san_of(cert_path: Path) -> list[x509.GeneralName]:
    certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return list(certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value)


@pytest.fixture
def pki(tmp_path: Path, now: datetime) -> Pki:
    return load_or_create_pki(tmp_path / "data", TRUST_DOMAIN, now)


def test_creates_the_ca_files_with_private_key_modes(pki: Pki) -> None:
    ca_dir = pki.paths.ca_dir
    assert {p.name for p in ca_dir.iterdir()} == CA_FILES
    assert mode(ca_dir) == 0o700
    for key in ca_dir.glob("*.key"):
        assert mode(key) == 0o600, key
    assert [p.name for p in ca_dir.parent.iterdir()] == ["ca"]  # no staging left behind


def test_bundle_and_broker_cafile_hold_the_right_cas(pki: Pki) -> None:
    assert subjects(pki.paths.bundle) == [
        "CN=KYM Device Root CA",
        "CN=KYM Device Issuing CA",
        "CN=KYM Service Root CA",
    ]
    assert subjects(pki.paths.device_cafile) == [
        "CN=KYM Device Root CA",
        "CN=KYM Device Issuing CA",
    ]


def test_created_chains_pass_strict_openssl_verify(pki: Pki) -> None:
    paths = pki.paths
    openssl_ok(
        "verify", "-x509_strict", "-CAfile", paths.device_root_cert, paths.device_issuing_cert
    )
    openssl_ok("verify", "-x509_strict", "-CAfile", paths.service_root_cert, paths.signer_cert)
    assert openssl("verify", "-CAfile", paths.device_cafile, paths.signer_cert).returncode != 0


def test_creates_an_empty_crl_of_the_issuing_ca(pki: Pki) -> None:
    crl = load_crl(pki)
    assert len(crl) == 0
    assert crl.issuer == pki.device_issuing.certificate.subject
    assert crl.is_signature_valid(pki.device_issuing.private_key.public_key())


def test_second_call_loads_the_same_material_and_rewrites_nothing(pki: Pki, now: datetime) -> None:
    before = {p.name: p.read_bytes() for p in pki.paths.ca_dir.iterdir()}
    again = load_or_create_pki(pki.paths.ca_dir.parent, TRUST_DOMAIN, now + timedelta(hours=1))
    assert again == pki
    assert {p.name: p.read_bytes() for p in again.paths.ca_dir.iterdir()} == before


def test_signer_is_renewed_with_the_same_key_before_it_expires(pki: Pki, now: datetime) -> None:
    later = pki.signer.certificate.not_valid_after_utc - timedelta(days=10)
    renewed = load_or_create_pki(pki.paths.ca_dir.parent, TRUST_DOMAIN, later)
    assert renewed.signer.certificate != pki.signer.certificate
    assert renewed.signer.certificate.not_valid_after_utc > later + timedelta(days=30)
    assert renewed.signer.private_key.public_key() == pki.signer.private_key.public_key()
    assert renewed.device_root == pki.device_root
    reloaded = load_or_create_pki(pki.paths.ca_dir.parent, TRUST_DOMAIN, later)
    assert reloaded.signer == renewed.signer


def test_missing_key_is_reported_not_replaced(pki: Pki, now: datetime) -> None:
    pki.paths.device_issuing_key.unlink()
    with pytest.raises(KeystoreDamaged, match="device-issuing"):
        load_or_create_pki(pki.paths.ca_dir.parent, TRUST_DOMAIN, now)
    assert not pki.paths.device_issuing_key.exists()


def test_key_of_another_certificate_is_reported(pki: Pki, now: datetime) -> None:
    pki.paths.device_root_key.write_bytes(pki.paths.service_root_key.read_bytes())
    with pytest.raises(KeystoreDamaged, match="does not belong"):
        load_or_create_pki(pki.paths.ca_dir.parent, TRUST_DOMAIN, now)


@pytest.mark.parametrize(
    ("host", "san"),
    [
        ("127.0.0.1", x509.IPAddress(ipaddress.ip_address("127.0.0.1"))),
        ("broker.example", x509.DNSName("broker.example")),
    ],
)
def test_server_certificate_names_the_mqtt_host(
    pki: Pki, now: datetime, host: str, san: x509.GeneralName
) -> None:
    cert_path, key_path = ensure_server_certificate(pki, host, now)
    assert san_of(cert_path) == [san]
    assert mode(key_path) == 0o600
    assert mode(cert_path.parent) == 0o700
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    assert key.public_key() == x509.load_pem_x509_certificate(cert_path.read_bytes()).public_key()
    openssl_ok("verify", "-x509_strict", "-CAfile", pki.paths.service_root_cert, cert_path)


def test_server_certificate_is_kept_for_the_same_host_and_reissued_for_another(
    pki: Pki, now: datetime
) -> None:
    cert_path, key_path = ensure_server_certificate(pki, "127.0.0.1", now)
    first = cert_path.read_bytes(), key_path.read_bytes()
    ensure_server_certificate(pki, "127.0.0.1", now + timedelta(days=1))
    assert (cert_path.read_bytes(), key_path.read_bytes()) == first
    ensure_server_certificate(pki, "mqtt.example", now + timedelta(days=1))
    assert san_of(cert_path) == [x509.DNSName("mqtt.example")]
    assert key_path.read_bytes() != first[1]


def test_server_certificate_is_reissued_within_30_days_of_expiry(pki: Pki, now: datetime) -> None:
    cert_path, _ = ensure_server_certificate(pki, "127.0.0.1", now)
    expiry = x509.load_pem_x509_certificate(cert_path.read_bytes()).not_valid_after_utc
    ensure_server_certificate(pki, "127.0.0.1", expiry - timedelta(days=31))
    assert x509.load_pem_x509_certificate(cert_path.read_bytes()).not_valid_after_utc == expiry
    ensure_server_certificate(pki, "127.0.0.1", expiry - timedelta(days=29))
    assert x509.load_pem_x509_certificate(cert_path.read_bytes()).not_valid_after_utc > expiry


def test_gateway_client_identities_are_distinct_stable_and_broker_clients(
    pki: Pki, now: datetime
) -> None:
    first = ensure_gateway_client_identity(pki, 0, now)
    second = ensure_gateway_client_identity(pki, 1, now)
    assert first != second
    assert san_of(first[0]) == [
        x509.UniformResourceIdentifier(f"spiffe://{TRUST_DOMAIN}/gateway/0")
    ]
    content = first[0].read_bytes()
    assert ensure_gateway_client_identity(pki, 0, now) == first
    assert first[0].read_bytes() == content
    assert mode(first[1]) == 0o600
    openssl_ok(
        "verify", "-x509_strict", "-purpose", "sslclient", "-crl_check",
        "-CAfile", pki.paths.device_cafile, "-CRLfile", pki.paths.crl, first[0],
    )  # fmt: skip


def test_gateway_client_identity_is_reissued_when_the_trust_domain_changes(
    pki: Pki, now: datetime
) -> None:
    cert_path, _ = ensure_gateway_client_identity(pki, 0, now)
    moved = load_or_create_pki(pki.paths.ca_dir.parent, "other.test", now)
    ensure_gateway_client_identity(moved, 0, now)
    assert san_of(cert_path) == [x509.UniformResourceIdentifier("spiffe://other.test/gateway/0")]


def test_write_crl_replaces_the_crl_file(pki: Pki, now: datetime) -> None:
    crl = build_crl(pki.device_issuing, [(99, now)], crl_number=5, now=now)
    write_crl(pki, crl)
    assert load_crl(pki) == crl
    assert {p.name for p in pki.paths.ca_dir.iterdir()} == CA_FILES  # no temporary file left
