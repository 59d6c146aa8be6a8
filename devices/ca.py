"""The device PKI ("know your machine"): the authorities, the certificates they issue, the CSRs.

Two roots. The device root signs only the device issuing CA, which signs device certificates
and the gateway's MQTT client certificates: the broker trusts exactly these two CAs and checks
the issuing CA's CRL (`devices.crl`). The service root signs the broker's server certificate and
the gateway's result-signing certificate; it is never in the broker's CA file, so nothing it
signs can log in. A device's own CSR contributes its key and nothing else; a manufacturer's
attestation of that key is checked by `devices.attestation`.

Pure: no file I/O, no clock (`now` is a parameter, an aware datetime).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from devices.errors import CsrInvalid

DevicePublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

CLOCK_SKEW = timedelta(minutes=5)
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
    host: str | Sequence[str],
    now: datetime,
    validity_days: int = 365,
    serial: int | None = None,
    common_name: str = "kym-broker",
) -> x509.Certificate:
    """A TLS server certificate (the broker's, the HTTP API's), naming `host` (or each of
    several hosts) as an IP or a DNS SAN."""
    sans = host_general_names(host)
    builder = _base(_name(common_name), public_key, issuer, now, validity_days, serial)
    return _sign_leaf(builder, issuer, sans, ExtendedKeyUsageOID.SERVER_AUTH)


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


def host_general_names(host: str | Sequence[str]) -> list[x509.GeneralName]:
    """The SANs naming a host, or each of several in order."""
    return [host_general_name(one) for one in ([host] if isinstance(host, str) else host)]


def server_names(host: str, hostname: str) -> tuple[str, ...]:
    """The hosts a server certificate for a listener on `host` names: `host` itself (the
    contract: the certificate names the --http, --mqtt or --listen host), and for a wildcard
    bind address (0.0.0.0, ::), which no client connects to by name, also localhost, the
    loopback address(es) and this machine's `hostname`, which clients do connect to."""
    try:
        address = ipaddress.ip_address(host.removeprefix("[").removesuffix("]"))
    except ValueError:
        return (host,)
    if not address.is_unspecified:
        return (host,)
    loopback = ("127.0.0.1",) if address.version == 4 else ("127.0.0.1", "::1")
    named = (hostname,) if hostname and _is_dns_name(hostname) else ()
    return tuple(dict.fromkeys((host, "localhost", *loopback, *named)))


def _is_dns_name(name: str) -> bool:
    labels = name.rstrip(".").split(".")
    return all(
        label and len(label) <= 63 and label.replace("-", "").isalnum() and label.isascii()
        for label in labels
    )


def host_general_name(host: str) -> x509.GeneralName:
    """An IPAddress name when `host` parses as an IP address (brackets allowed), else a DNSName."""
    bare = host.removeprefix("[").removesuffix("]")
    try:
        return x509.IPAddress(ipaddress.ip_address(bare))
    except ValueError:
        assert host and " " not in host, f"not a host name: {host!r}"
        return x509.DNSName(host)


# --- what devices send ----------------------------------------------------------------------


def load_csr(pem: bytes) -> x509.CertificateSigningRequest:
    """Parse a CSR whose self-signature is valid and whose key is EC P-256 or Ed25519."""
    try:
        csr = x509.load_pem_x509_csr(pem)
        public_key = csr.public_key()
        signature_valid = csr.is_signature_valid
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise CsrInvalid("the CSR does not parse as a PEM certificate signing request") from exc
    if not is_accepted_device_key(public_key):
        raise CsrInvalid("the CSR's key must be EC P-256 or Ed25519")
    if not signature_valid:
        raise CsrInvalid("the CSR's self-signature is not valid")
    return csr


def key_fingerprint(public_key: DevicePublicKey) -> str:
    """The key's identity: SHA-256 of its SubjectPublicKeyInfo (DER), lowercase hex."""
    spki = public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    return digest.finalize().hex()


def is_accepted_device_key(public_key: object) -> bool:
    """Whether a device may hold this key: EC P-256 or Ed25519, nothing else."""
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        return isinstance(public_key.curve, ec.SECP256R1)
    return isinstance(public_key, ed25519.Ed25519PublicKey)


def authority_key_id(issuer: x509.Certificate) -> x509.AuthorityKeyIdentifier:
    """The AuthorityKeyIdentifier naming `issuer`'s key, for what `issuer` signs."""
    key_id = issuer.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    return x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(key_id)


def utc(now: datetime) -> datetime:
    """`now` in UTC; it must be an aware datetime."""
    assert now.tzinfo is not None, "pass an aware datetime"
    return now.astimezone(UTC)


# --- internals -------------------------------------------------------------------------------


def _base(
    subject: x509.Name,
    public_key: DevicePublicKey,
    issuer: CertifiedKey | None,
    now: datetime,
    validity_days: int,
    serial: int | None,
) -> x509.CertificateBuilder:
    """Names, key, serial, validity, SKI and AKI; `issuer` None means self-signed."""
    now = utc(now)
    not_after = now + timedelta(days=validity_days)
    key_id = x509.SubjectKeyIdentifier.from_public_key(public_key)
    issuer_name = subject
    authority = x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(key_id)
    if issuer is not None:
        # A certificate outliving its issuer would fail validation early without saying why.
        not_after = min(not_after, issuer.certificate.not_valid_after_utc)
        issuer_name = issuer.certificate.subject
        authority = authority_key_id(issuer.certificate)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(public_key)
        .serial_number(serial if serial is not None else x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(key_id, critical=False)
        .add_extension(authority, critical=False)
    )


def _as_ca(builder: x509.CertificateBuilder, path_length: int) -> x509.CertificateBuilder:
    usage = _key_usage(key_cert_sign=True, crl_sign=True)
    return builder.add_extension(
        x509.BasicConstraints(ca=True, path_length=path_length), critical=True
    ).add_extension(usage, critical=True)


def _sign_leaf(
    builder: x509.CertificateBuilder,
    issuer: CertifiedKey,
    san: x509.GeneralName | list[x509.GeneralName],
    eku: x509.ObjectIdentifier | None,
) -> x509.Certificate:
    sans = san if isinstance(san, list) else [san]
    builder = (
        builder.add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
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


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
