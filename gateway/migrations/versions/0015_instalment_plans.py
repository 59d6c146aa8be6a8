"""Instalment plans (contract section 8): a plan per payment paid by instalments, its
scheduled instalments, and the offer an approval carries when an instalment offer applies.

A plan owes its whole total from the moment it opens (the credit line's balance moves by the
amount paid and the fee); each instalment is collected on its due date from the owner's balance
sources, whole or not at all. `collection_id` ties a paid instalment to its ledger transfers
(their `idempotency_key`, unique per debited account for `collect` transfers), so `kym ledger
check` can match them and a collection is never done twice.

Revision ID: 0015_instalment_plans
Revises: 0014_cache_versions
"""

import sqlalchemy as sa
from alembic import op

revision = "0015_instalment_plans"
down_revision = "0014_cache_versions"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)
_SEQ = sa.BigInteger().with_variant(sa.Integer, "sqlite")  # SQLite autoincrements INTEGER only


def upgrade() -> None:
    op.create_table(
        "instalment_plans",
        sa.Column("seq", _SEQ, primary_key=True),  # creation order: listed newest first
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("owner_id", sa.String(64), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=False),
        sa.Column("payment_id", sa.String(64), nullable=False, unique=True),
        sa.Column("source_id", sa.String(64), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("fee_minor", sa.BigInteger, nullable=False),
        sa.Column("total_minor", sa.BigInteger, nullable=False),
        sa.Column("apr_bps", sa.Integer, nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("interval_days", sa.Integer, nullable=False),
        sa.Column("status", sa.String(8), nullable=False),  # active | repaid | overdue
        sa.Column("opened_at", _TIME, nullable=False),
        sa.Column("repaid_at", _TIME, nullable=True),
        sa.CheckConstraint("total_minor = amount_minor + fee_minor", name="ck_plans_total"),
    )
    op.create_index("ix_instalment_plans_owner", "instalment_plans", ["owner_id", "seq"])
    op.create_table(
        "instalments",
        sa.Column("plan_id", sa.String(64), sa.ForeignKey("instalment_plans.id"), primary_key=True),
        sa.Column("n", sa.Integer, primary_key=True),
        sa.Column("due_at", _TIME, nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(9), nullable=False),  # scheduled | paid | overdue
        sa.Column("next_try_at", _TIME, nullable=False),  # the due date, then daily when overdue
        sa.Column("paid_at", _TIME, nullable=True),
        sa.Column("collection_id", sa.String(64), nullable=True),  # the ledger transfers' key
    )
    op.create_index("ix_instalments_next_try", "instalments", ["status", "next_try_at"])
    op.create_index(
        "ux_wallet_transfers_collect",
        "wallet_transfers",
        ["debit_account_id", "idempotency_key"],
        unique=True,
        sqlite_where=sa.text("kind = 'collect'"),
        postgresql_where=sa.text("kind = 'collect'"),
    )
    with op.batch_alter_table("approvals") as batch:
        batch.add_column(sa.Column("offer_json", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("approvals") as batch:
        batch.drop_column("offer_json")
    op.drop_index("ux_wallet_transfers_collect", "wallet_transfers")
    op.drop_index("ix_instalments_next_try", "instalments")
    op.drop_table("instalments")
    op.drop_index("ix_instalment_plans_owner", "instalment_plans")
    op.drop_table("instalment_plans")
