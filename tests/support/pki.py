"""Certificates made in memory for tests: the gateway's authorities and a manufacturer's CAs.

A manufacturer here looks like many real ones: a root and an intermediate without SKI or AKI, and
attestation leaves with neither SAN, EKU nor BasicConstraints.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import NameOID

from devices import ca
from devices.ca import CertifiedKey

TRUST_DOMAIN = "kym.test"


@dataclass(frozen=True)
class Authorities:
    """The gateway's CAs, made in memory with `devices.ca`."""

    device_root: CertifiedKey
    device_issuing: CertifiedKey
    service_root: CertifiedKey


def make_authorities(now: datetime) -> Authorities:
    """A device root, its issuing CA and a service root."""
    device_root = ca.create_root_ca("Test Device Root", now, path_length=1)
    return Authorities(
        device_root=device_root,
        device_issuing=ca.create_issuing_ca(device_root, "Test Device Issuing", now),
        service_root=ca.create_root_ca("Test Service Root", now, path_length=0),
    )


@dataclass(frozen=True)
class Manufacturer:
    """A device maker's attestation CAs: a root and the intermediate that signs its devices."""

    root: x509.Certificate
    root_key: ec.EllipticCurvePrivateKey
    intermediate: x509.Certificate
    intermediate_key: ec.EllipticCurvePrivateKey


def manufacturer_name(cn: str) -> x509.Name:
    """A name in the manufacturer's organisation."""
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Acme"),
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
        ]
    )


def ca_key_usage() -> x509.KeyUsage:
    """keyCertSign and cRLSign, nothing else."""
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
        .subject_name(manufacturer_name(subject))
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
    )
    if is_ca:  # like many manufacturers' CAs: no SKI or AKI
        builder = builder.add_extension(x509.BasicConstraints(True, None), critical=True)
        builder = builder.add_extension(ca_key_usage(), critical=True)
    # A typical attestation leaf: no SAN, no EKU, no BasicConstraints.
    return builder.sign(issuer_key, hashes.SHA256())


def make_manufacturer(name: str, now: datetime) -> Manufacturer:
    """A manufacturer whose CAs are valid from a year before `now` for ten years."""
    root_key, intermediate_key = ca.new_private_key(), ca.new_private_key()
    start, end = now - timedelta(days=365), now + timedelta(days=3650)
    root_name = manufacturer_name(f"{name} Root")
    root = _certificate(
        f"{name} Root", root_key.public_key(), root_name, root_key, start, end, True
    )
    intermediate = _certificate(
        f"{name} Devices", intermediate_key.public_key(), root_name, root_key, start, end, True
    )
    return Manufacturer(root, root_key, intermediate, intermediate_key)


def leaf_for(
    maker: Manufacturer,
    public_key: PublicKeyTypes,
    now: datetime,
    expired: bool = False,
) -> x509.Certificate:
    """An attestation leaf for `public_key` (a device's key), signed by the maker's intermediate."""
    assert isinstance(public_key, ca.DevicePublicKey), type(public_key)
    not_after = now - timedelta(days=1) if expired else now + timedelta(days=3650)
    start = now - timedelta(days=30)
    issuer, key = maker.intermediate.subject, maker.intermediate_key
    return _certificate("SN 0001", public_key, issuer, key, start, not_after, False)


def pem(*certificates: x509.Certificate) -> bytes:
    """The certificates as one PEM chain, in the order given."""
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certificates)
