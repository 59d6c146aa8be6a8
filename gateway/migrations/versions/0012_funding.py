"""Funding sources (contract section 8): an owner's balance sources and credit lines, drawn on
in `priority` order and then in creation order (`seq`). Their money lives in the ledger: each
source has a `wallet_accounts` row with the source's id.

Revision ID: 0012_funding
Revises: 0011_disputes
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_funding"
down_revision = "0011_disputes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "funding_sources",
        sa.Column("seq", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("owner_id", sa.String(64), sa.ForeignKey("owners.id"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),  # balance | credit_line
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("floor_minor", sa.BigInteger, nullable=False),
        sa.Column("credit_limit_minor", sa.BigInteger, nullable=True),
        sa.Column("apr_bps", sa.Integer, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('balance', 'credit_line')", name="ck_funding_sources_kind"),
        sa.CheckConstraint("floor_minor >= 0", name="ck_funding_sources_floor"),
        sa.CheckConstraint(
            "(kind = 'balance' AND credit_limit_minor IS NULL AND apr_bps IS NULL)"
            " OR (kind = 'credit_line' AND floor_minor = 0 AND credit_limit_minor >= 1"
            " AND apr_bps BETWEEN 0 AND 10000)",
            name="ck_funding_sources_terms",
        ),
    )
    op.create_index(
        "ix_funding_sources_draw_order", "funding_sources", ["owner_id", "priority", "seq"]
    )


def downgrade() -> None:
    op.drop_index("ix_funding_sources_draw_order", table_name="funding_sources")
    op.drop_table("funding_sources")
