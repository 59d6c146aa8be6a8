"""Attestation: a manufacturer's certificate chain vouching for the key in a device's CSR.

An integrator registers its manufacturers' CAs (`check_attestation_ca`); a registration that
carries a chain must validate up to one of them (RFC 5280) and its leaf must hold the CSR's key
(`verify_attestation`). Pure: no file I/O, no clock (`now` is a parameter).
"""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.verification import (
    ClientVerifier,
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from devices.ca import DevicePublicKey, utc
from devices.errors import AttestationCaInvalid, AttestationInvalid

_Ext = TypeVar("_Ext", bound=x509.ExtensionType)


def verify_attestation(
    chain_pem: bytes,
    trusted: list[x509.Certificate],
    public_key: DevicePublicKey,
    now: datetime,
) -> list[x509.Certificate]:
    """Check that the chain (leaf first) validates to `trusted` and certifies `public_key`.

    Returns the validated path, leaf first, ending with the trusted CA.
    """
    chain = _load_certificates(chain_pem, AttestationInvalid)
    if not trusted:
        raise AttestationInvalid("no attestation CA is registered for this integrator")
    if _leaf_spki(chain[0]) != _spki(public_key):
        raise AttestationInvalid("the attestation leaf holds another key than the CSR")
    try:
        verified = _attestation_verifier(trusted, now).verify(chain[0], chain[1:])
    except (VerificationError, x509.UnsupportedGeneralNameType) as exc:
        raise AttestationInvalid(f"the attestation chain does not validate: {exc}") from exc
    return verified.chain


def check_attestation_ca(pem: bytes) -> x509.Certificate:
    """Parse a manufacturer CA that `verify_attestation` can use as a trust anchor."""
    certificates = _load_certificates(pem, AttestationCaInvalid)
    if len(certificates) != 1:
        raise AttestationCaInvalid(f"expected one certificate, got {len(certificates)}")
    certificate = certificates[0]
    try:
        certificate.extensions  # noqa: B018 - parsed here, where a failure can be named
    except ValueError as exc:
        raise AttestationCaInvalid(f"the certificate's extensions do not parse: {exc}") from exc
    constraints = _extension(certificate, x509.BasicConstraints)
    if constraints is None or not constraints.value.ca:
        raise AttestationCaInvalid("the certificate is not a CA (BasicConstraints ca=TRUE)")
    if not constraints.critical:
        raise AttestationCaInvalid("the CA's BasicConstraints extension must be critical")
    key_usage = _extension(certificate, x509.KeyUsage)
    if key_usage is None or not key_usage.value.key_cert_sign:
        raise AttestationCaInvalid("the CA's KeyUsage must allow keyCertSign")
    if not _is_verifiable_ca_key(certificate):
        raise AttestationCaInvalid(
            "the CA's key must be RSA of 2048 bits or more, or EC P-256/384/521"
        )
    return certificate


def _attestation_verifier(trusted: list[x509.Certificate], now: datetime) -> ClientVerifier:
    # Manufacturers' attestation leaves often carry neither SAN nor EKU: check the CAs by the
    # Web PKI's rules but only refuse a CA posing as the leaf.
    leaf_policy = ExtensionPolicy.permit_all().may_be_present(
        x509.BasicConstraints, Criticality.AGNOSTIC, _refuse_ca_leaf
    )
    return (
        PolicyBuilder()
        .store(Store(trusted))
        .time(utc(now))
        .extension_policies(ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=leaf_policy)
        .build_client_verifier()
    )


def _is_verifiable_ca_key(certificate: x509.Certificate) -> bool:
    # The keys that x509.verification accepts for a CA (Ed25519 CAs, for one, it refuses).
    try:
        key = certificate.public_key()
    except (ValueError, UnsupportedAlgorithm):
        return False
    if isinstance(key, rsa.RSAPublicKey):
        return key.key_size >= 2048
    curves = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
    return isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, curves)


def _refuse_ca_leaf(
    _policy: Policy, _certificate: x509.Certificate, value: x509.BasicConstraints | None
) -> None:
    if value is not None and value.ca:
        raise ValueError("the attestation leaf is a CA certificate")


def _load_certificates(
    pem: bytes, error: type[AttestationInvalid] | type[AttestationCaInvalid]
) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem)
    except (ValueError, TypeError) as exc:
        raise error("not a PEM certificate chain") from exc


def _extension(certificate: x509.Certificate, kind: type[_Ext]) -> x509.Extension[_Ext] | None:
    try:
        return certificate.extensions.get_extension_for_class(kind)
    except x509.ExtensionNotFound:
        return None


def _leaf_spki(leaf: x509.Certificate) -> bytes:
    try:
        return _spki(leaf.public_key())
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise AttestationInvalid(f"the attestation leaf's key is not supported: {exc}") from exc


def _spki(public_key: CertificatePublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
