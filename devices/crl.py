"""Certificate revocation lists of the device issuing CA (RFC 5280, SHA-256).

A CRL past its `nextUpdate` makes every handshake fail, so `kym serve` re-issues it well before
`CRL_LIFETIME` runs out. Pure: no file I/O, no clock (`now` is a parameter).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from devices.ca import CLOCK_SKEW, CertifiedKey, authority_key_id, utc

CRL_LIFETIME = timedelta(days=7)


def build_crl(
    issuer: CertifiedKey,
    revoked: Iterable[tuple[int, datetime]],
    crl_number: int,
    now: datetime,
    next_update: datetime | None = None,
) -> x509.CertificateRevocationList:
    """A CRL of `issuer` listing `(serial, revoked_at)` pairs (RFC 5280, SHA-256)."""
    assert crl_number >= 0, crl_number
    now = utc(now)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(issuer.certificate.subject)
        .last_update(now - CLOCK_SKEW)
        .next_update(utc(next_update) if next_update else now + CRL_LIFETIME)
        .add_extension(x509.CRLNumber(crl_number), critical=False)
        .add_extension(authority_key_id(issuer.certificate), critical=False)
    )
    for serial, revoked_at in revoked:
        entry = x509.RevokedCertificateBuilder().serial_number(serial)
        builder = builder.add_revoked_certificate(entry.revocation_date(utc(revoked_at)).build())
    return builder.sign(issuer.private_key, hashes.SHA256())
