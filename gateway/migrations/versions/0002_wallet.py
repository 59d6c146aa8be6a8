"""Wallets: ledger accounts, the append-only journal of transfers, payments and top-up keys.

The same tables are declared in `wallet/schema.py` (the wallet package does not import gateway);
`tests/wallet/test_schema.py` checks that the two agree.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_SEQ = sa.BigInteger().with_variant(sa.Integer, "sqlite")
_TIME = sa.DateTime(timezone=True)
_APPEND_ONLY = "wallet_transfers is append-only"


def upgrade() -> None:
    op.create_table(
        "wallet_accounts",
        sa.Column("id", sa.String(80), primary_key=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("debits_must_not_exceed_credits", sa.Boolean, nullable=False),
        sa.Column("debits_posted", sa.BigInteger, nullable=False),
        sa.Column("credits_posted", sa.BigInteger, nullable=False),
        sa.Column("debits_pending", sa.BigInteger, nullable=False),
        sa.Column("credits_pending", sa.BigInteger, nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.CheckConstraint(
            "debits_posted >= 0 AND credits_posted >= 0 AND debits_pending >= 0"
            " AND credits_pending >= 0",
            name="ck_wallet_accounts_counters",
        ),
        sa.CheckConstraint(
            "NOT debits_must_not_exceed_credits"
            " OR debits_posted + debits_pending <= credits_posted",
            name="ck_wallet_accounts_no_overdraft",
        ),
    )
    op.create_table(
        "wallet_transfers",
        sa.Column("id", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("payment_id", sa.String(64), nullable=True),
        sa.Column("pending_id", sa.String(64), nullable=True),
        sa.Column("idempotency_key", sa.String(64), nullable=True),
        sa.Column(
            "debit_account_id", sa.String(80), sa.ForeignKey("wallet_accounts.id"), nullable=False
        ),
        sa.Column(
            "credit_account_id", sa.String(80), sa.ForeignKey("wallet_accounts.id"), nullable=False
        ),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("expires_at", _TIME, nullable=True),
        sa.CheckConstraint("amount_minor > 0", name="ck_wallet_transfers_amount"),
        sa.CheckConstraint(
            "debit_account_id <> credit_account_id", name="ck_wallet_transfers_accounts"
        ),
        # A hold is resolved (captured, voided or expired) at most once.
        sa.UniqueConstraint("pending_id", name="uq_wallet_transfers_pending"),
    )
    op.create_index(
        "ux_wallet_transfers_opening",
        "wallet_transfers",
        ["payment_id"],
        unique=True,
        sqlite_where=sa.text("kind IN ('pay', 'hold')"),
        postgresql_where=sa.text("kind IN ('pay', 'hold')"),
    )
    op.create_index(
        "ux_wallet_transfers_top_up",
        "wallet_transfers",
        ["credit_account_id", "idempotency_key"],
        unique=True,
        sqlite_where=sa.text("kind = 'top_up'"),
        postgresql_where=sa.text("kind = 'top_up'"),
    )
    op.create_table(
        "wallet_payments",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("payment_id", sa.String(64), nullable=False),
        sa.Column("order_id", sa.String(64), nullable=False),
        sa.Column("payer_id", sa.String(80), nullable=False),
        sa.Column("payee_id", sa.String(80), nullable=False),
        sa.Column("type", sa.String(4), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("captured_amount_minor", sa.BigInteger, nullable=False),
        sa.Column("refunded_amount_minor", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(9), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("expires_at", _TIME, nullable=True),
        sa.CheckConstraint(
            "amount_minor > 0 AND captured_amount_minor <= amount_minor"
            " AND refunded_amount_minor >= 0 AND refunded_amount_minor <= captured_amount_minor",
            name="ck_wallet_payments_amounts",
        ),
        sa.UniqueConstraint("payment_id", name="uq_wallet_payments_payment_id"),
    )
    op.create_index("ix_wallet_payments_payer", "wallet_payments", ["payer_id", "seq"])
    op.create_index("ix_wallet_payments_payee", "wallet_payments", ["payee_id", "seq"])
    op.create_index("ix_wallet_payments_due", "wallet_payments", ["status", "expires_at"])
    op.create_table(
        "wallet_top_ups",
        sa.Column(
            "holder_id", sa.String(80), sa.ForeignKey("wallet_accounts.id"), primary_key=True
        ),
        sa.Column("idempotency_key", sa.String(64), primary_key=True),
        sa.Column("request_sha256", sa.String(64), nullable=False),
        sa.Column("amount_minor", sa.BigInteger, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("balance_minor", sa.BigInteger, nullable=False),
        sa.Column("available_minor", sa.BigInteger, nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
    )
    _forbid_journal_changes()


def _forbid_journal_changes() -> None:
    """The journal is append-only: the database refuses UPDATE, DELETE and TRUNCATE on it."""
    if op.get_bind().dialect.name == "sqlite":
        for event in ("UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER wallet_transfers_no_{event.lower()} BEFORE {event}"
                f" ON wallet_transfers BEGIN SELECT RAISE(ABORT, '{_APPEND_ONLY}'); END"
            )
        return
    op.execute(
        "CREATE FUNCTION wallet_transfers_append_only() RETURNS trigger LANGUAGE plpgsql AS"
        f" $$ BEGIN RAISE EXCEPTION '{_APPEND_ONLY}'; END $$"
    )
    op.execute(
        "CREATE TRIGGER wallet_transfers_append_only BEFORE UPDATE OR DELETE"
        " ON wallet_transfers FOR EACH ROW EXECUTE FUNCTION wallet_transfers_append_only()"
    )
    op.execute(
        "CREATE TRIGGER wallet_transfers_no_truncate BEFORE TRUNCATE"
        " ON wallet_transfers FOR EACH STATEMENT EXECUTE FUNCTION wallet_transfers_append_only()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        op.execute("DROP TRIGGER wallet_transfers_no_truncate ON wallet_transfers")
        op.execute("DROP TRIGGER wallet_transfers_append_only ON wallet_transfers")
        op.execute("DROP FUNCTION wallet_transfers_append_only()")
    for table in ("wallet_top_ups", "wallet_payments", "wallet_transfers", "wallet_accounts"):
        op.drop_table(table)
