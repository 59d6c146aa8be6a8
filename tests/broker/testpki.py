"""A throwaway PKI for the embedded broker's tests, shaped like KYM's: a device root CA signs
device certificates (CN = device id) and the gateway's client certificates; a separate service
root signs the broker's server certificate and a signing certificate; a foreign CA signs nothing
the broker trusts."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Ca:
    name: str
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate
    path: Path


@dataclass(frozen=True)
class Identity:
    """A client certificate and its key, as files."""

    cn: str
    cert: Path
    key: Path
    serial: int


@dataclass(frozen=True)
class Pki:
    dir: Path
    device_ca: Ca
    service_ca: Ca
    foreign_ca: Ca
    server: Identity
    signing: Identity
    devices: dict[str, Identity]
    gateway: Identity
    gateway2: Identity
    service_client: Identity
    foreign_device: Identity
    no_eku_device: Identity

    def issue(
        self,
        cn: str,
        name: str,
        usage: x509.ObjectIdentifier | None = ExtendedKeyUsageOID.CLIENT_AUTH,
    ) -> Identity:
        """Issue another client certificate from the device CA (`usage` None: no EKU at all)."""
        return issue_client(self.dir, self.device_ca, cn, name, usage)

    def write_crl(self, path: Path, revoked: tuple[int, ...] = ()) -> Path:
        """Write a CRL file: the foreign CA's (empty) CRL, then the device CA's."""
        pem = _crl(self.foreign_ca, ()) + _crl(self.device_ca, revoked)
        path.write_bytes(pem)
        return path


def _now() -> datetime:
    return datetime.now(UTC)


def new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> Path:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(directory: Path, cn: str) -> Ca:
    key = new_key()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - timedelta(hours=1))
        .not_valid_after(_now() + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{cn}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Ca(cn, key, cert, path)


def leaf(
    ca: Ca,
    cn: str,
    key: ec.EllipticCurvePrivateKey,
    san: x509.GeneralName,
    eku: list[x509.ObjectIdentifier] | None,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(_now() - timedelta(hours=1))
        .not_valid_after(_now() + timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([san]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    if eku is not None:
        builder = builder.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
    return builder.sign(ca.key, hashes.SHA256())


def save(
    directory: Path, name: str, cn: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate
) -> Identity:
    cert_path = directory / f"{name}.crt"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Identity(cn, cert_path, _write_key(directory / f"{name}.key", key), cert.serial_number)


def issue_client(
    directory: Path,
    ca: Ca,
    cn: str,
    name: str,
    usage: x509.ObjectIdentifier | None = ExtendedKeyUsageOID.CLIENT_AUTH,
) -> Identity:
    key = new_key()
    san = x509.UniformResourceIdentifier(f"urn:kym:device:{cn}")
    eku = [usage] if usage is not None else None
    return save(directory, name, cn, key, leaf(ca, cn, key, san, eku))


def _crl(ca: Ca, revoked: tuple[int, ...]) -> bytes:
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.cert.subject)
        .last_update(_now() - timedelta(minutes=1))
        .next_update(_now() + timedelta(days=1))
    )
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(_now() - timedelta(minutes=1))
            .build()
        )
    return builder.sign(ca.key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
