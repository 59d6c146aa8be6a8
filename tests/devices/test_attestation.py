"""Attestation: a manufacturer chain must validate to a trusted CA and hold the CSR's key."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from devices import attestation, ca
from devices.errors import AttestationCaInvalid, AttestationInvalid
from tests.support.openssl import openssl_csr
from tests.support.pki import (
    Manufacturer,
    ca_key_usage,
    leaf_for,
    make_manufacturer,
    manufacturer_name,
    pem,
)


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
    path = attestation.verify_attestation(pem(leaf, acme.intermediate), [acme.root], key, now)
    assert path == [leaf, acme.intermediate, acme.root]


def test_chain_that_includes_the_root_passes(acme: Manufacturer, now: datetime) -> None:
    key = ca.new_private_key().public_key()
    chain = pem(leaf_for(acme, key, now), acme.intermediate, acme.root)
    assert len(attestation.verify_attestation(chain, [acme.root], key, now)) == 3


def test_any_of_several_trusted_cas_will_do(acme: Manufacturer, now: datetime) -> None:
    key = ca.new_private_key().public_key()
    other = make_manufacturer("Other", now)
    chain = pem(leaf_for(acme, key, now), acme.intermediate)
    attestation.verify_attestation(chain, [other.root, acme.root], key, now)


def test_leaf_with_another_key_than_the_csr_fails(acme: Manufacturer, now: datetime) -> None:
    leaf = leaf_for(acme, ca.new_private_key().public_key(), now)
    csr_key = ca.new_private_key().public_key()
    with pytest.raises(AttestationInvalid, match="another key"):
        attestation.verify_attestation(pem(leaf, acme.intermediate), [acme.root], csr_key, now)


def test_chain_to_a_foreign_root_fails(acme: Manufacturer, now: datetime) -> None:
    key = ca.new_private_key().public_key()
    forger = make_manufacturer("Acme", now)  # same names, other keys
    chain = pem(leaf_for(forger, key, now), forger.intermediate, forger.root)
    with pytest.raises(AttestationInvalid, match="does not validate"):
        attestation.verify_attestation(chain, [acme.root], key, now)


def test_expired_leaf_fails(acme: Manufacturer, now: datetime) -> None:
    key = ca.new_private_key().public_key()
    chain = pem(leaf_for(acme, key, now, expired=True), acme.intermediate)
    with pytest.raises(AttestationInvalid, match="does not validate"):
        attestation.verify_attestation(chain, [acme.root], key, now)


def test_missing_intermediate_fails(acme: Manufacturer, now: datetime) -> None:
    key = ca.new_private_key().public_key()
    with pytest.raises(AttestationInvalid, match="does not validate"):
        attestation.verify_attestation(pem(leaf_for(acme, key, now)), [acme.root], key, now)


def test_a_ca_certificate_posing_as_the_leaf_fails(acme: Manufacturer, now: datetime) -> None:
    key = acme.intermediate_key.public_key()
    with pytest.raises(AttestationInvalid, match="leaf is a CA"):
        attestation.verify_attestation(pem(acme.intermediate), [acme.root], key, now)


def test_no_trusted_ca_fails(acme: Manufacturer, now: datetime) -> None:
    key = ca.new_private_key().public_key()
    with pytest.raises(AttestationInvalid, match="no attestation CA"):
        attestation.verify_attestation(
            pem(leaf_for(acme, key, now), acme.intermediate), [], key, now
        )


@pytest.mark.parametrize(
    "chain", [b"", b"garbage", b"-----BEGIN CERTIFICATE-----\nAA\n-----END CERTIFICATE-----\n"]
)
def test_garbage_chain_fails(acme: Manufacturer, now: datetime, chain: bytes) -> None:
    key = ca.new_private_key().public_key()
    with pytest.raises(AttestationInvalid, match="not a PEM"):
        attestation.verify_attestation(chain, [acme.root], key, now)


def test_manufacturer_ca_is_accepted(acme: Manufacturer) -> None:
    assert attestation.check_attestation_ca(pem(acme.root)) == acme.root
    assert attestation.check_attestation_ca(pem(acme.intermediate)) == acme.intermediate


def test_leaf_is_not_accepted_as_manufacturer_ca(acme: Manufacturer, now: datetime) -> None:
    leaf = leaf_for(acme, ca.new_private_key().public_key(), now)
    with pytest.raises(AttestationCaInvalid, match="not a CA"):
        attestation.check_attestation_ca(pem(leaf))


def test_manufacturer_ca_without_key_cert_sign_is_refused(now: datetime) -> None:
    key = ca.new_private_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(manufacturer_name("No KU"))
        .issuer_name(manufacturer_name("No KU"))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(True, None), critical=True)
        .sign(key, hashes.SHA256())
    )
    with pytest.raises(AttestationCaInvalid, match="keyCertSign"):
        attestation.check_attestation_ca(pem(cert))


@pytest.mark.parametrize("data", [b"", b"garbage"])
def test_garbage_manufacturer_ca_is_refused(data: bytes) -> None:
    with pytest.raises(AttestationCaInvalid):
        attestation.check_attestation_ca(data)


def test_two_certificates_are_refused_as_one_manufacturer_ca(acme: Manufacturer) -> None:
    with pytest.raises(AttestationCaInvalid, match="one certificate"):
        attestation.check_attestation_ca(pem(acme.root, acme.intermediate))


def test_manufacturer_ca_with_a_key_the_verifier_refuses_is_refused(now: datetime) -> None:
    key = ed25519.Ed25519PrivateKey.generate()
    cert = (
        x509.CertificateBuilder()
        .subject_name(manufacturer_name("Ed25519 CA"))
        .issuer_name(manufacturer_name("Ed25519 CA"))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(True, None), critical=True)
        .add_extension(ca_key_usage(), critical=True)
        .sign(key, None)
    )
    with pytest.raises(AttestationCaInvalid, match="RSA of 2048 bits"):
        attestation.check_attestation_ca(pem(cert))


def test_manufacturer_ca_whose_extensions_do_not_parse_is_refused(now: datetime) -> None:
    """A BasicConstraints whose value is not one (an unknown extension renamed in the DER):
    `cryptography` raises ValueError reading it, which was a 500 on the API."""
    key = ca.new_private_key()
    unknown = x509.ObjectIdentifier("2.5.29.99")
    cert = (
        x509.CertificateBuilder()
        .subject_name(manufacturer_name("Bad ext"))
        .issuer_name(manufacturer_name("Bad ext"))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.UnrecognizedExtension(unknown, b"\x01\x02\x03"), critical=True)
        .add_extension(ca_key_usage(), critical=True)
        .sign(key, hashes.SHA256())
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    broken = x509.load_der_x509_certificate(
        der.replace(b"\x06\x03\x55\x1d\x63", b"\x06\x03\x55\x1d\x13")
    )
    with pytest.raises(AttestationCaInvalid, match="extensions do not parse"):
        attestation.check_attestation_ca(pem(broken))
