"""One public key, one device, for good: `device_keys` binds each key (the SHA-256 of its
SubjectPublicKeyInfo, DER, lowercase hex) to the device it identifies. Registration and rotation
refuse a key bound to another device (409 `device_exists`); the primary key makes two of them
racing with one key unable to both pass.

The binding is filled in from every certificate issued so far, oldest first (by `issued_at`, then
serial): a key belongs to the first device whose certificate held it. Before this migration
nothing stopped one key from being issued to two devices; where existing data has that, the
earliest binding is kept and every later device's certificate with that key is logged (a warning
naming both devices and the serial) rather than failing the migration. Those certificates are
left as they are (revoking them here would take a running device offline without its owner
knowing); their devices can only rotate to a key of their own from now on, and the operator can
revoke them after reading the log. A certificate whose PEM does not parse (none should exist) is
logged and skipped.

Revision ID: 0019_device_keys
Revises: 0018_events_nearly_index
"""

import logging
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from alembic import op
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

revision = "0019_device_keys"
down_revision = "0018_events_nearly_index"
branch_labels = None
depends_on = None

log = logging.getLogger("kym.migrations")
BATCH = 1000

certificates = sa.table(
    "device_certificates",
    sa.column("serial", sa.String),
    sa.column("device_id", sa.String),
    sa.column("certificate_pem", sa.Text),
    sa.column("issued_at", sa.DateTime(timezone=True)),
)


def upgrade() -> None:
    keys = op.create_table(
        "device_keys",
        sa.Column("fingerprint", sa.String(64), primary_key=True),
        sa.Column("device_id", sa.String(64), sa.ForeignKey("devices.id"), nullable=False),
        sa.Column("bound_at", sa.DateTime(timezone=True), nullable=False),
    )
    rows = list(_first_bindings())
    for start in range(0, len(rows), BATCH):
        op.bulk_insert(keys, rows[start : start + BATCH])


def downgrade() -> None:
    op.drop_table("device_keys")


def _first_bindings() -> Iterator[dict[str, Any]]:
    """One row per key: the device of the earliest certificate that held it."""
    holders: dict[str, str] = {}
    query = sa.select(certificates).order_by(certificates.c.issued_at, certificates.c.serial)
    for cert in op.get_bind().execute(query):
        fingerprint = _fingerprint(cert.certificate_pem, cert.serial)
        if fingerprint is None:
            continue
        holder = holders.get(fingerprint)
        if holder is None:
            holders[fingerprint] = cert.device_id
            yield {
                "fingerprint": fingerprint,
                "device_id": cert.device_id,
                "bound_at": cert.issued_at,
            }
        elif holder != cert.device_id:
            log.warning(
                "certificate %s of device %s holds the key of device %s (issued to it first): "
                "the key stays %s's; %s must rotate to a key of its own",
                cert.serial, cert.device_id, holder, holder, cert.device_id,
            )  # fmt: skip


def _fingerprint(pem: str, serial: str) -> str | None:
    try:
        public_key = x509.load_pem_x509_certificate(pem.encode()).public_key()
    except ValueError:
        log.warning("certificate %s does not parse; its key is bound to no device", serial)
        return None
    digest = hashes.Hash(hashes.SHA256())
    digest.update(public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))
    return digest.finalize().hex()
