"""The ledger's tables (SQLAlchemy Core), as migration 0002 creates them, and how times are stored.

Database constraints back the ledger's rules up: wallets cannot overdraw, a hold resolves once
(unique `pending_id`), a payment id opens one payment, and triggers (in the migration) refuse
UPDATE and DELETE on the journal (`wallet_transfers`).
"""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

metadata = sa.MetaData()
_SEQ = sa.BigInteger().with_variant(sa.Integer, "sqlite")  # SQLite autoincrements INTEGER only
_TIME = sa.DateTime(timezone=True)

accounts = sa.Table(
    "wallet_accounts",
    metadata,
    sa.Column("id", sa.String(80), primary_key=True),
    sa.Column("kind", sa.String(8), nullable=False),  # wallet | contra
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
        "NOT debits_must_not_exceed_credits OR debits_posted + debits_pending <= credits_posted",
        name="ck_wallet_accounts_no_overdraft",
    ),
)

transfers = sa.Table(
    "wallet_transfers",
    metadata,
    sa.Column("id", _SEQ, primary_key=True, autoincrement=True),
    sa.Column("kind", sa.String(8), nullable=False),
    sa.Column("payment_id", sa.String(64), nullable=True),
    sa.Column("pending_id", sa.String(64), nullable=True),  # the hold a capture/void/expire ends
    sa.Column("idempotency_key", sa.String(64), nullable=True),  # a top-up's
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
    sa.UniqueConstraint("pending_id", name="uq_wallet_transfers_pending"),
    sa.Index(
        "ux_wallet_transfers_opening",
        "payment_id",
        unique=True,
        sqlite_where=sa.text("kind IN ('pay', 'hold')"),
        postgresql_where=sa.text("kind IN ('pay', 'hold')"),
    ),
    sa.Index(
        "ux_wallet_transfers_top_up",
        "credit_account_id",
        "idempotency_key",
        unique=True,
        sqlite_where=sa.text("kind = 'top_up'"),
        postgresql_where=sa.text("kind = 'top_up'"),
    ),
    sa.Index(  # an instalment collection moves once per source (migration 0015)
        "ux_wallet_transfers_collect",
        "debit_account_id",
        "idempotency_key",
        unique=True,
        sqlite_where=sa.text("kind = 'collect'"),
        postgresql_where=sa.text("kind = 'collect'"),
    ),
)

payments = sa.Table(
    "wallet_payments",
    metadata,
    sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
    sa.Column("payment_id", sa.String(64), nullable=False),
    sa.Column("order_id", sa.String(64), nullable=False),
    # No foreign keys: a refused pay's row is inserted before its accounts are found (and then
    # deleted); check() ties every row to the journal, whose transfers do name real accounts.
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
    sa.Index("ix_wallet_payments_payer", "payer_id", "seq"),
    sa.Index("ix_wallet_payments_payee", "payee_id", "seq"),
    # only the held payments: what the expiry sweep looks for (migration 0024)
    sa.Index(
        "ix_wallet_payments_due",
        "expires_at",
        "payment_id",
        postgresql_where=sa.text("status = 'held'"),
        sqlite_where=sa.text("status = 'held'"),
    ),
)

top_ups = sa.Table(
    "wallet_top_ups",
    metadata,
    sa.Column("holder_id", sa.String(80), sa.ForeignKey("wallet_accounts.id"), primary_key=True),
    sa.Column("idempotency_key", sa.String(64), primary_key=True),
    sa.Column("request_sha256", sa.String(64), nullable=False),
    sa.Column("amount_minor", sa.BigInteger, nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("balance_minor", sa.BigInteger, nullable=False),  # the first answer, replayed
    sa.Column("available_minor", sa.BigInteger, nullable=False),
    sa.Column("created_at", _TIME, nullable=False),
)

COUNTERS = ("debits_posted", "credits_posted", "debits_pending", "credits_pending")


def utc(value: datetime) -> datetime:
    """`value` in UTC, as it is stored (SQLite keeps a DateTime without its offset)."""
    return value.astimezone(UTC)


def aware(value: datetime) -> datetime:
    """A stored time read back, in UTC (SQLite returns it naive)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
