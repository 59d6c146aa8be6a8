"""Parties, API keys, devices, certificates, CA state and the audit chain.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _created() -> sa.Column:  # type: ignore[type-arg]
    return sa.Column("created_at", sa.DateTime(timezone=True), nullable=False)


def upgrade() -> None:
    op.create_table(
        "owners",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("timezone", sa.String(64), nullable=False),
        _created(),
    )
    op.create_table(
        "integrators",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        _created(),
    )
    op.create_table(
        "merchants",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        _created(),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_hash", sa.String(64), primary_key=True),
        sa.Column("party_kind", sa.String(16), nullable=False),
        sa.Column("party_id", sa.String(64), nullable=False),
        _created(),
    )
    op.create_table(
        "attestation_cas",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("integrator_id", sa.String(64), sa.ForeignKey("integrators.id"), nullable=False),
        sa.Column("certificate_pem", sa.Text, nullable=False),
        _created(),
    )
    op.create_table(
        "devices",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("owner_id", sa.String(64), sa.ForeignKey("owners.id"), nullable=False),
        sa.Column("integrator_id", sa.String(64), sa.ForeignKey("integrators.id"), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("manufacturer", sa.String(200), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("serial_number", sa.String(200), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("category", sa.String(32), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attested", sa.Boolean, nullable=False),
        _created(),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("manufacturer", "serial_number", name="uq_devices_manufacturer_serial"),
    )
    op.create_index("ix_devices_owner", "devices", ["owner_id"])
    op.create_table(
        "device_certificates",
        sa.Column("serial", sa.String(64), primary_key=True),
        sa.Column("device_id", sa.String(64), sa.ForeignKey("devices.id"), nullable=False),
        sa.Column("certificate_pem", sa.Text, nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("first_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_device_certificates_device", "device_certificates", ["device_id"])
    op.create_table(
        "ca_state",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("crl_number", sa.BigInteger, nullable=False),
        sa.Column("crl_issued_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_table(
        "audit_log",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(80), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=True),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_log_device", "audit_log", ["device_id", "seq"])
    # The anchor lives outside the audit table, so truncating the chain's tail is detectable.
    op.create_table(
        "chain_head",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.execute("INSERT INTO chain_head (name, seq, hash) VALUES ('audit', 0, '" + "0" * 64 + "')")
    op.execute("INSERT INTO ca_state (name, crl_number) VALUES ('device', 0)")


def downgrade() -> None:
    for table in (
        "chain_head",
        "audit_log",
        "ca_state",
        "device_certificates",
        "devices",
        "attestation_cas",
        "api_keys",
        "merchants",
        "integrators",
        "owners",
    ):
        op.drop_table(table)
