"""Disputes (contract section 9): one per payment at most (a unique index), listed newest first
by `seq`; the housekeeper finds those past `respond_by` and those whose refund is pending.

Revision ID: 0011_disputes
Revises: 0010_evidence
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_disputes"
down_revision = "0010_evidence"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "disputes",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("payment_id", sa.String(64), nullable=False, unique=True),
        sa.Column("owner_id", sa.String(64), nullable=False),
        sa.Column("payer_id", sa.String(64), nullable=False),
        sa.Column("payee_id", sa.String(64), nullable=False),
        sa.Column("payee_party", sa.String(64), nullable=False),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("refunded_at_open", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("respond_by", _TIME, nullable=False),
        sa.Column("response_decision", sa.String(16), nullable=True),
        sa.Column("response_message", sa.Text, nullable=True),
        sa.Column("resolution_message", sa.Text, nullable=True),
        sa.Column("resolved_by", sa.String(100), nullable=True),
        sa.Column("refund_pending", sa.Boolean, nullable=False),
        sa.Column("refund_due_minor", sa.BigInteger, nullable=False),
        sa.Column("refunded_minor", sa.BigInteger, nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("updated_at", _TIME, nullable=False),
    )
    op.create_index("ix_disputes_owner", "disputes", ["owner_id", "seq"])
    op.create_index("ix_disputes_payee", "disputes", ["payee_party", "seq"])
    op.create_index("ix_disputes_due", "disputes", ["status", "respond_by"])


def downgrade() -> None:
    op.drop_table("disputes")
