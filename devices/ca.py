"""The device PKI ("know your machine"): issue certificates, build CRLs, check attestations.

Two roots. The device root signs only the device issuing CA, which signs device certificates
and the gateway's MQTT client certificates: the broker trusts exactly these two CAs and checks
the issuing CA's CRL. The service root signs the broker's server certificate and the gateway's
result-signing certificate; it is never in the broker's CA file, so nothing it signs can log in.

Pure: no file I/O, no clock (`now` is a parameter, an aware datetime).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from cryptography.x509.verification import (
    ClientVerifier,
    Criticality,
    ExtensionPolicy,
    Policy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from devices.errors import AttestationCaInvalid, AttestationInvalid, CsrInvalid

DevicePublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
_Ext = TypeVar("_Ext", bound=x509.ExtensionType)

CLOCK_SKEW = timedelta(minutes=5)
CRL_LIFETIME = timedelta(days=7)
_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_TRUST_DOMAIN = re.compile(r"[a-z0-9._-]{1,255}")


@dataclass(frozen=True)
class CertifiedKey:
    """A certificate and its subject's private key: a CA, or the gateway's signer."""

    certificate: x509.Certificate
    # Key objects compare by identity; the certificate names the key, and loaders check the pair.
    private_key: ec.EllipticCurvePrivateKey = field(compare=False)


def new_private_key() -> ec.EllipticCurvePrivateKey:
    """A fresh EC P-256 private key."""
    return ec.generate_private_key(ec.SECP256R1())


def device_spiffe_id(trust_domain: str, device_id: str) -> str:
    """The URI SAN of a device certificate."""
    assert _TRUST_DOMAIN.fullmatch(trust_domain), trust_domain
    assert _ID.fullmatch(device_id), device_id
    return f"spiffe://{trust_domain}/device/{device_id}"


def gateway_spiffe_id(trust_domain: str, n: int) -> str:
    """The URI SAN of gateway worker `n`'s MQTT client certificate."""
    assert _TRUST_DOMAIN.fullmatch(trust_domain), trust_domain
    assert n >= 0, n
    return f"spiffe://{trust_domain}/gateway/{n}"


def signer_spiffe_id(trust_domain: str) -> str:
    """The URI SAN of the gateway's result-signing certificate."""
    assert _TRUST_DOMAIN.fullmatch(trust_domain), trust_domain
    return f"spiffe://{trust_domain}/gateway/signer"


# --- authorities -----------------------------------------------------------------------------


def create_root_ca(
    common_name: str,
    now: datetime,
    path_length: int,
    key: ec.EllipticCurvePrivateKey | None = None,
    validity_days: int = 7300,
) -> CertifiedKey:
    """A self-signed root CA (P-256, SHA-256)."""
    key = key or new_private_key()
    builder = _base(_name(common_name), key.public_key(), None, now, validity_days, None)
    certificate = _as_ca(builder, path_length).sign(key, hashes.SHA256())
    return CertifiedKey(certificate, key)


def create_issuing_ca(
    root: CertifiedKey,
    common_name: str,
    now: datetime,
    key: ec.EllipticCurvePrivateKey | None = None,
    validity_days: int = 3650,
) -> CertifiedKey:
    """An intermediate CA under `root` that may sign only end-entity certificates."""
    key = key or new_private_key()
    builder = _base(_name(common_name), key.public_key(), root, now, validity_days, None)
    certificate = _as_ca(builder, 0).sign(root.private_key, hashes.SHA256())
    return CertifiedKey(certificate, key)


# --- end entities ----------------------------------------------------------------------------


def issue_device_certificate(
    issuer: CertifiedKey,
    csr: x509.CertificateSigningRequest,
    device_id: str,
    trust_domain: str,
    now: datetime,
    validity_days: int = 90,
    serial: int | None = None,
) -> x509.Certificate:
    """A device's TLS client certificate; the CSR contributes its key and nothing else."""
    public_key = csr.public_key()
    assert isinstance(public_key, DevicePublicKey), "load the CSR with load_csr first"
    san = x509.UniformResourceIdentifier(device_spiffe_id(trust_domain, device_id))
    builder = _base(_name(device_id), public_key, issuer, now, validity_days, serial)
    return _sign_leaf(builder, issuer, san, ExtendedKeyUsageOID.CLIENT_AUTH)


def issue_gateway_client_certificate(
    issuer: CertifiedKey,
    public_key: ec.EllipticCurvePublicKey,
    n: int,
    trust_domain: str,
    now: datetime,
    validity_days: int = 365,
    serial: int | None = None,
) -> x509.Certificate:
    """Gateway worker `n`'s MQTT client certificate (CN `kym-gateway-<n>`)."""
    san = x509.UniformResourceIdentifier(gateway_spiffe_id(trust_domain, n))
    builder = _base(_name(f"kym-gateway-{n}"), public_key, issuer, now, validity_days, serial)
    return _sign_leaf(builder, issuer, san, ExtendedKeyUsageOID.CLIENT_AUTH)


def issue_server_certificate(
    issuer: CertifiedKey,
    public_key: ec.EllipticCurvePublicKey,
    host: str,
    now: datetime,
    validity_days: int = 365,
    serial: int | None = None,
) -> x509.Certificate:
    """The broker's TLS server certificate, naming `host` as an IP or a DNS SAN."""
    san = host_general_name(host)
    builder = _base(_name("kym-broker"), public_key, issuer, now, validity_days, serial)
    return _sign_leaf(builder, issuer, san, ExtendedKeyUsageOID.SERVER_AUTH)


def issue_signing_certificate(
    issuer: CertifiedKey,
    public_key: ec.EllipticCurvePublicKey,
    trust_domain: str,
    now: datetime,
    validity_days: int = 730,
    serial: int | None = None,
) -> x509.Certificate:
    """The gateway's result-signing certificate: digitalSignature only, no EKU."""
    san = x509.UniformResourceIdentifier(signer_spiffe_id(trust_domain))
    builder = _base(_name("kym-gateway-signer"), public_key, issuer, now, validity_days, serial)
    return _sign_leaf(builder, issuer, san, None)


def host_general_name(host: str) -> x509.GeneralName:
    """An IPAddress name when `host` parses as an IP address (brackets allowed), else a DNSName."""
    bare = host.removeprefix("[").removesuffix("]")
    try:
        return x509.IPAddress(ipaddress.ip_address(bare))
    except ValueError:
        assert host and " " not in host, f"not a host name: {host!r}"
        return x509.DNSName(host)


def build_crl(
    issuer: CertifiedKey,
    revoked: Iterable[tuple[int, datetime]],
    crl_number: int,
    now: datetime,
    next_update: datetime | None = None,
) -> x509.CertificateRevocationList:
    """A CRL of `issuer` listing `(serial, revoked_at)` pairs (RFC 5280, SHA-256)."""
    assert crl_number >= 0, crl_number
    now = _utc(now)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(now - CLOCK_SKEW)
        .next_update(_utc(next_update) if next_update else now + CRL_LIFETIME)
        .add_extension(x509.CRLNumber(crl_number), critical=False)
        .add_extension(_authority_key_id(issuer.certificate), critical=False)
    )
    for serial, revoked_at in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(serial)
        builder = builder.add_revoked_certificate(entry.revocation_date(_utc(revoked_at)).build())
    return builder.sign(issuer.private_key, hashes.SHA256())


# --- what devices and integrators send -------------------------------------------------------


def load_csr(pem: bytes) -> x509.CertificateSigningRequest:
    """Parse a CSR whose self-signature is valid and whose key is EC P-256 or Ed25519."""
    try:
        csr = x509.load_pem_x509_csr(pem)
        public_key = csr.public_key()
        signature_valid = csr.is_signature_valid
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CsrInvalid(f"the CSR does not parse: {exc}") from exc
    if not is_accepted_device_key(public_key):
        raise CsrInvalid("the CSR's key must be EC P-256 or Ed25519")
    if not signature_valid:
        raise CsrInvalid("the CSR's self-signature is not valid")
    return csr


def is_accepted_device_key(public_key: object) -> bool:
    """Whether a device may hold this key: EC P-256 or Ed25519, nothing else."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return isinstance(public_key.curve, ec.SECP256R1)
    return isinstance(public_key, ed25519.Ed25519PublicKey)


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


# --- internals -------------------------------------------------------------------------------


def _attestation_verifier(trusted: list[x509.Certificate], now: datetime) -> ClientVerifier:
    # Manufacturers' attestation leaves often carry neither SAN nor EKU: check the CAs by the
    # Web PKI's rules but only refuse a CA posing as the leaf.
    leaf_policy = ExtensionPolicy.permit_all().may_be_present(
        x509.BasicConstraints, Criticality.AGNOSTIC, _refuse_ca_leaf
    )
    return (
        PolicyBuilder()
        .store(Store(trusted))
        .time(_utc(now))
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


def _base(
    subject: x509.Name,
    public_key: DevicePublicKey,
    issuer: CertifiedKey | None,
    now: datetime,
    validity_days: int,
    serial: int | None,
) -> x509.CertificateBuilder:
    """Names, key, serial, validity, SKI and AKI; `issuer` None means self-signed."""
    now = _utc(now)
    not_after = now + timedelta(days=validity_days)
    key_id = x509.SubjectKeyIdentifier.from_public_key(public_key)
    issuer_name = subject
    authority_key_id = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(key_id)
    if issuer is not None:
        # A certificate outliving its issuer would fail validation early without saying why.
        not_after = min(not_after, issuer.certificate.not_valid_after_utc)
        issuer_name = issuer.certificate.subject
        authority_key_id = _authority_key_id(issuer.certificate)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(key_id, critical=False)
        .add_extension(authority_key_id, critical=False)
    )


def _as_ca(builder: x509.CertificateBuilder, path_length: int) -> x509.CertificateBuilder:
    usage = _key_usage(key_cert_sign=True, crl_sign=True)
    return builder.add_extension(
        x509.BasicConstraints(ca=True, path_length=path_length), critical=True
    ).add_extension(usage, critical=True)


def _sign_leaf(
    builder: x509.CertificateBuilder,
    issuer: CertifiedKey,
    san: x509.GeneralName,
    eku: x509.ObjectIdentifier | None,
) -> x509.Certificate:
    builder = (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
    )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
    return builder.sign(issuer.private_key, hashes.SHA256())


def _key_usage(
    digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=crl_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _authority_key_id(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    key_id = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(key_id)


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _load_certificates(
    pem: bytes, error: type[AttestationInvalid] | type[AttestationCaInvalid]
) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem)
    except (ValueError, TypeError) as exc:
        raise error(f"not a PEM certificate chain: {exc}") from exc


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


def _utc(now: datetime) -> datetime:
    assert now.tzinfo is not None, "pass an aware datetime"
    return now.astimezone(UTC)
