"""Attestation: a manufacturer chain must validate to a trusted CA and hold the CSR's key."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from devices import ca
from devices.errors import AttestationCaInvalid, AttestationInvalid
from tests.devices.conftest import openssl_csr


@dataclass(frozen=True)
class Manufacturer:
    root: x509.Certificate
    root_key: ec.EllipticCurvePrivateKey
    intermediate: x509.Certificate
    intermediate_key: ec.EllipticCurvePrivateKey


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(False, False, False, False, False, True, True, False, False)


def _certificate(
    subject: str,
    public_key: ca.DevicePublicKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    not_before: datetime,
    not_after: datetime,
    is_ca: bool,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if is_ca:  # like many manufacturers' CAs: no SKI or AKI
        builder = builder.add_extension(x509.BasicConstraints(True, None), critical=True)
        builder = builder.add_extension(_ca_usage(), critical=True)
    # A typical attestation leaf: no SAN, no EKU, no BasicConstraints.
    return builder.sign(issuer_key, hashes.SHA256())


def make_manufacturer(name: str, now: datetime) -> Manufacturer:
    root_key, intermediate_key = ca.new_private_key(), ca.new_private_key()
    start, end = now - timedelta(days=365), now + timedelta(days=3650)
    root_name = _name(f"{name} Root")
    root = _certificate(
        f"{name} Root", root_key.public_key(), root_name, root_key, start, end, True
    )
    intermediate = _certificate(
        f"{name} Devices", intermediate_key.public_key(), root_name, root_key, start, end, True
    )
    return Manufacturer(root, root_key, intermediate, intermediate_key)


def leaf_for(
    maker: Manufacturer, public_key: ca.DevicePublicKey, now: datetime, expired: bool = False
) -> x509.Certificate:
    not_after = now - timedelta(days=1) if expired else now + timedelta(days=3650)
    start = now - timedelta(days=30)
    issuer, key = maker.intermediate.subject, maker.intermediate_key
    return _certificate("SN 0001", public_key, issuer, key, start, not_after, False)


def pem(*certificates: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)


@pytest.fixture(scope="module")
def acme(now: datetime) -> Manufacturer:
    return make_manufacturer("Acme", now)


@pytest.mark.parametrize("algorithm", ["p256", "ed25519"])
def test_chain_to_manufacturer_root_holding_the_csr_key_passes(
    tmp_path: Path, acme: Manufacturer, now: datetime, algorithm: str
) -> None:
    key = ca.load_csr(openssl_csr(tmp_path, algorithm)).public_key()
    assert isinstance(key, ca.DevicePublicKey)
    leaf = leaf_for(acme, key, now)
    path = ca.verify_attestation(pem(leaf, acme.intermediate), [acme.root], key, now)
    assert path == [leaf, acme.intermediate, acme.root]


def test_chain_that_includes_the_root_passes(acme: Manufacturer, now: datetime) -> None:
    key = ca.new_private_key().public_key()
    chain = pem(leaf_for(acme, key, now), acme.intermediate, acme.root)
    assert len(ca.verify_attestation(chain, [acme.root], key, now)) == 3


def test_any_of_several_trusted_cas_will_do(acme: Manufacturer, now: datetime) -> None:
    key = ca.new_private_key().public_key()
    other = make_manufacturer("Other", now)
    chain = pem(leaf_for(acme, key, now), acme.intermediate)
    ca.verify_attestation(chain, [other.root, acme.root], key, now)


def test_leaf_with_another_key_than_the_csr_fails(acme: Manufacturer, now: datetime) -> None:
    leaf = leaf_for(acme, ca.new_private_key().public_key(), now)
    csr_key = ca.new_private_key().public_key()
    with pytest.raises(AttestationInvalid, match="another key"):
        ca.verify_attestation(pem(leaf, acme.intermediate), [acme.root], csr_key, now)


def test_chain_to_a_foreign_root_fails(acme: Manufacturer, now: datetime) -> None:
    key = ca.new_private_key().public_key()
    forger = make_manufacturer("Acme", now)  # same names, other keys
    chain = pem(leaf_for(forger, key, now), forger.intermediate, forger.root)
    with pytest.raises(AttestationInvalid, match="does not validate"):
        ca.verify_attestation(chain, [acme.root], key, now)


def test_expired_leaf_fails(acme: Manufacturer, now: datetime) -> None:
    key = ca.new_private_key().public_key()
    chain = pem(leaf_for(acme, key, now, expired=True), acme.intermediate)
    with pytest.raises(AttestationInvalid, match="does not validate"):
        ca.verify_attestation(chain, [acme.root], key, now)


def test_missing_intermediate_fails(acme: Manufacturer, now: datetime) -> None:
    key = ca.new_private_key().public_key()
    with pytest.raises(AttestationInvalid, match="does not validate"):
        ca.verify_attestation(pem(leaf_for(acme, key, now)), [acme.root], key, now)


def test_a_ca_certificate_posing_as_the_leaf_fails(acme: Manufacturer, now: datetime) -> None:
    key = acme.intermediate_key.public_key()
    with pytest.raises(AttestationInvalid, match="leaf is a CA"):
        ca.verify_attestation(pem(acme.intermediate), [acme.root], key, now)


def test_no_trusted_ca_fails(acme: Manufacturer, now: datetime) -> None:
    key = ca.new_private_key().public_key()
    with pytest.raises(AttestationInvalid, match="no attestation CA"):
        ca.verify_attestation(pem(leaf_for(acme, key, now), acme.intermediate), [], key, now)


@pytest.mark.parametrize(
    "chain", [b"", b"garbage", b"-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----\n"]
)
def test_garbage_chain_fails(acme: Manufacturer, now: datetime, chain: bytes) -> None:
    key = ca.new_private_key().public_key()
    with pytest.raises(AttestationInvalid, match="not a PEM"):
        ca.verify_attestation(chain, [acme.root], key, now)


def test_manufacturer_ca_is_accepted(acme: Manufacturer) -> None:
    assert ca.check_attestation_ca(pem(acme.root)) == acme.root
    assert ca.check_attestation_ca(pem(acme.intermediate)) == acme.intermediate


def test_leaf_is_not_accepted_as_manufacturer_ca(acme: Manufacturer, now: datetime) -> None:
    leaf = leaf_for(acme, ca.new_private_key().public_key(), now)
    with pytest.raises(AttestationCaInvalid, match="not a CA"):
        ca.check_attestation_ca(pem(leaf))


def test_manufacturer_ca_without_key_cert_sign_is_refused(now: datetime) -> None:
    key = ca.new_private_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("No KU"))
        .issuer_name(_name("No KU"))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(True, None), critical=True)
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(AttestationCaInvalid, match="keyCertSign"):
        ca.check_attestation_ca(pem(cert))


@pytest.mark.parametrize("data", [b"", b"garbage"])
def test_garbage_manufacturer_ca_is_refused(data: bytes) -> None:
    with pytest.raises(AttestationCaInvalid):
        ca.check_attestation_ca(data)


def test_two_certificates_are_refused_as_one_manufacturer_ca(acme: Manufacturer) -> None:
    with pytest.raises(AttestationCaInvalid, match="one certificate"):
        ca.check_attestation_ca(pem(acme.root, acme.intermediate))


def test_manufacturer_ca_with_a_key_the_verifier_refuses_is_refused(now: datetime) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("Ed25519 CA"))
        .issuer_name(_name("Ed25519 CA"))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(True, None), critical=True)
        .add_extension(_ca_usage(), critical=True)
        .sign(key, None)
    )
    with pytest.raises(AttestationCaInvalid, match="RSA of 2048 bits"):
        ca.check_attestation_ca(pem(cert))
