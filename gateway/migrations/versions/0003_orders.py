"""Orders and their results (the outbox), rules, mandates, approvals and spend counters.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)
_SEQ = sa.BigInteger().with_variant(sa.Integer, "sqlite")
PERIODS = ("day", "week", "month", "year")


def upgrade() -> None:
    op.create_table(
        "orders",
        sa.Column("device_id", sa.String(64), primary_key=True),
        sa.Column("order_id", sa.String(64), primary_key=True),
        sa.Column("payload_sha256", sa.String(64), nullable=False),
        sa.Column("type", sa.String(8), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("payment_id", sa.String(64), nullable=True),
        sa.Column("result_json", sa.Text, nullable=False),
        sa.Column("received_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
    )
    op.create_table(
        "outbox",
        sa.Column("id", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("topic", sa.String(200), nullable=False),
        sa.Column("jws", sa.Text, nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("published_at", _TIME, nullable=True),
    )
    op.create_index("ix_outbox_unpublished", "outbox", ["published_at", "id"])
    op.create_table(
        "device_rules",
        sa.Column("device_id", sa.String(64), sa.ForeignKey("devices.id"), primary_key=True),
        sa.Column("rules_json", sa.Text, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
    )
    op.create_table(
        "mandates",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("device_id", sa.String(64), sa.ForeignKey("devices.id"), nullable=False),
        sa.Column("payee", sa.String(64), nullable=True),
        sa.Column("category", sa.String(32), nullable=True),
        sa.Column("max_amount_minor", sa.BigInteger, nullable=False),
        sa.Column("limits_json", sa.Text, nullable=False),
        sa.Column("valid_from", _TIME, nullable=True),
        sa.Column("valid_until", _TIME, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("revoked_at", _TIME, nullable=True),
    )
    op.create_index("ix_mandates_device", "mandates", ["device_id"])
    op.create_table(
        "approvals",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("device_id", sa.String(64), sa.ForeignKey("devices.id"), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("order_json", sa.Text, nullable=False),
        sa.Column("payee", sa.String(64), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("expires_at", _TIME, nullable=False),
        sa.Column("decided_at", _TIME, nullable=True),
        sa.Column("result_status", sa.String(20), nullable=True),
        sa.Column("result_reason", sa.String(40), nullable=True),
    )
    op.create_index("ix_approvals_status_expiry", "approvals", ["status", "expires_at"])
    op.create_index("ix_approvals_device", "approvals", ["device_id"])
    counter_columns: list[sa.Column] = []  # type: ignore[type-arg]
    for period in PERIODS:
        counter_columns += [
            sa.Column(f"{period}_key", sa.String(24), nullable=False, server_default=""),
            sa.Column(f"{period}_spent", sa.BigInteger, nullable=False, server_default="0"),
            sa.Column(f"{period}_count", sa.BigInteger, nullable=False, server_default="0"),
        ]
    # scope: a device id (its limits) or a mandate id (the mandate's own limits)
    op.create_table(
        "spend_counters", sa.Column("scope", sa.String(64), primary_key=True), *counter_columns
    )
    # what each approved pay or hold counted, so captures, voids and refunds can give it back
    op.create_table(
        "payment_scopes",
        sa.Column("payment_id", sa.String(64), primary_key=True),
        sa.Column("payer_id", sa.String(64), nullable=False),
        sa.Column("mandate_id", sa.String(64), nullable=True),
        sa.Column("period_keys", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for table in (
        "payment_scopes",
        "spend_counters",
        "approvals",
        "mandates",
        "device_rules",
        "outbox",
        "orders",
    ):
        op.drop_table(table)
