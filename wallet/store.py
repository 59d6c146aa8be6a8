"""The ledger in SQL (SQLAlchemy Core): accounts, the append-only journal, payments and top-ups.

Every function takes the caller's `Connection` and never commits: the gateway commits the money,
its spend counters and the order's result in one transaction, or a batch of orders at once
(`place_payments`).

Money moves with one conditional UPDATE per account, the two accounts of a transfer always in
the same order (sorted ids), so transfers in opposite directions cannot deadlock. A wallet's row
matches only while its available balance covers the transfer, so the check and the write are one
statement: PostgreSQL (READ COMMITTED) re-evaluates the condition on the newest row version after
waiting for the row lock, and SQLite writes are serialised by `BEGIN IMMEDIATE`. A refusal undoes
whatever the call wrote before raising (an account already moved, the payment row inserted
first), so it leaves the transaction as it found it and the caller may commit its result.

Statements per operation: a pay or hold 4 (insert the payment, two accounts, append to the
journal; 3 in a batch, whose journal rows go in at once), a capture or void 4 (resolve the
payment, append, two accounts), a refund 4, a top-up 4. The accounts come as late as they can,
because a hot wallet stays locked from its UPDATE until the commit. These statements run on the
DBAPI cursor (`_Prepared`). Database constraints back the rules up: wallets cannot overdraw, a
hold resolves once (unique `pending_id`), a payment id opens one payment, and triggers (in the
migration) refuse UPDATE and DELETE on the journal.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Row, bindparam, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from wallet import ledger
from wallet.errors import CurrencyNotAllowed, IdempotencyConflict, WalletRefusal
from wallet.ledger import (
    Account,
    Delta,
    Payment,
    PaymentRequest,
    PaymentStatus,
    PaymentType,
    TopUpResult,
    TransferKind,
    Wallet,
)

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
    sa.Index("ix_wallet_payments_due", "status", "expires_at"),
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

_COUNTERS = ("debits_posted", "credits_posted", "debits_pending", "credits_pending")


# One account of a transfer. A wallet's row matches only while its available balance is at least
# `p_need`, so the check and the write are one statement; READ COMMITTED re-evaluates the
# condition on the newest row version once the row lock is granted.
_MOVE = (
    update(accounts)
    .where(
        accounts.c.id == bindparam("p_id"),
        accounts.c.currency == bindparam("p_currency"),
        sa.or_(
            sa.not_(accounts.c.debits_must_not_exceed_credits),
            accounts.c.credits_posted - accounts.c.debits_posted - accounts.c.debits_pending
            >= bindparam("p_need", type_=sa.BigInteger),
        ),
    )
    .values(
        {name: accounts.c[name] + bindparam(f"p_{name}", type_=sa.BigInteger) for name in _COUNTERS}
    )
    .returning(accounts.c.id, *(accounts.c[name] for name in _COUNTERS), accounts.c.currency)
)
# Two statements on purpose: PostgreSQL may re-run a LIMIT subquery inside an UPDATE once per
# outer row, and each re-run would skip the rows the statement itself just locked.
_DUE = (
    select(payments.c.payment_id)
    .where(
        payments.c.status == PaymentStatus.HELD.value, payments.c.expires_at <= bindparam("p_now")
    )
    .order_by(payments.c.expires_at, payments.c.payment_id)
    .limit(bindparam("p_limit"))
    .with_for_update(skip_locked=True)  # several workers may sweep at once
)
_EXPIRE = (
    update(payments)
    .where(
        payments.c.payment_id.in_(bindparam("p_ids", expanding=True)),
        payments.c.status == PaymentStatus.HELD.value,
    )
    .values(status=PaymentStatus.EXPIRED.value)
    .returning(*payments.c)
)
_UNREFUND = (
    update(payments)
    .where(payments.c.payment_id == bindparam("p_payment_id"))
    .values(refunded_amount_minor=payments.c.refunded_amount_minor - bindparam("p_amount"))
)


def _ignoring_duplicates(table: sa.Table, *columns: str) -> dict[str, Any]:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING: a row back means it was inserted."""
    return {
        "postgresql": postgresql.insert(table)
        .on_conflict_do_nothing(index_elements=columns)
        .returning(table.c[columns[0]]),
        "sqlite": sqlite.insert(table)
        .on_conflict_do_nothing(index_elements=columns)
        .returning(table.c[columns[0]]),
    }


_INSERT_ACCOUNT = _ignoring_duplicates(accounts, "id")
_INSERT_TOP_UP = _ignoring_duplicates(top_ups, "holder_id", "idempotency_key")


class _Prepared:
    """A Core statement compiled once per dialect and run on the DBAPI cursor itself.

    SQLAlchemy spends about 45 µs on every execution (context, parameters, result), three times
    what SQLite needs to run one of these statements; the statements every payment runs skip it.
    Parameters still pass through their types' bind processors, so values are stored exactly as
    Core would store them, and the statement runs in the caller's transaction.
    """

    def __init__(self, statements: dict[str, Any], column_keys: Sequence[str] | None = None):
        self._statements = statements
        self._column_keys = column_keys
        self._plans: dict[str, tuple[str, tuple[str, ...] | None, dict[str, Any]]] = {}

    def rows(self, conn: Connection, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Execute with `params` (by bind name) and return the rows it returns."""
        plan = self._plans.get(conn.dialect.name) or self._compile(conn.dialect)
        sql, positions, processors = plan
        values = {k: processors[k](v) if k in processors else v for k, v in params.items()}
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(sql, values if positions is None else [values[k] for k in positions])
            return cursor.fetchall() if cursor.description else []
        except conn.dialect.loaded_dbapi.Error as error:
            # Raise what Core would, so that Database.run still retries deadlocks and locks.
            raise sa.exc.DBAPIError.instance(
                sql, values, error, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect
            ) from error
        finally:
            cursor.close()

    def _compile(self, dialect: sa.Dialect) -> tuple[str, tuple[str, ...] | None, dict[str, Any]]:
        statement = self._statements.get(dialect.name, self._statements.get("*"))
        assert statement is not None, f"no statement for {dialect.name}"
        compiled = statement.compile(dialect=dialect, column_keys=self._column_keys)
        processors = {}
        for key, bind in compiled.binds.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                processors[key] = processor
        positions = tuple(compiled.positiontup) if dialect.positional else None
        self._plans[dialect.name] = (compiled.string, positions, processors)
        return self._plans[dialect.name]


_TRANSFER_KEYS = (
    "kind",
    "payment_id",
    "pending_id",
    "idempotency_key",
    "debit_account_id",
    "credit_account_id",
    "amount_minor",
    "currency",
    "created_at",
    "expires_at",
)
_PAYMENT_KEYS = (
    "payment_id",
    "order_id",
    "payer_id",
    "payee_id",
    "type",
    "amount_minor",
    "captured_amount_minor",
    "refunded_amount_minor",
    "status",
    "currency",
    "created_at",
    "expires_at",
)
_MOVE_FAST = _Prepared({"*": _MOVE})
_DELETE_PAYMENT = _Prepared(
    {"*": sa.delete(payments).where(payments.c.payment_id == bindparam("p_payment_id"))}
)
_INSERT_PAYMENT = _Prepared(_ignoring_duplicates(payments, "payment_id"), _PAYMENT_KEYS)
_INSERT_TRANSFER = _Prepared({"*": insert(transfers)}, _TRANSFER_KEYS)


@dataclass(frozen=True)
class _Moved:
    currency: str
    deltas: dict[str, Delta]
    rows: dict[str, tuple[Any, ...]]  # account id -> (id, *counters, currency) once moved


# --- wallets -------------------------------------------------------------------------------------


def open_wallet(conn: Connection, *, holder_id: str, currency: str, now: datetime) -> Wallet:
    """Open the holder's wallet in `currency` (and the currency's funding account); idempotent."""
    ledger.assert_id(holder_id)
    ledger.assert_currency(currency)
    ledger.assert_time(now)
    insert_account = _INSERT_ACCOUNT[conn.dialect.name]
    conn.execute(insert_account, _account_row(holder_id, "wallet", currency, now))
    wallet = get_wallet(conn, holder_id)
    assert wallet is not None
    if wallet.currency != currency:
        raise CurrencyNotAllowed(f"{holder_id} already has a {wallet.currency} wallet")
    conn.execute(
        insert_account, _account_row(ledger.funding_account_id(currency), "contra", currency, now)
    )
    return wallet


def get_wallet(conn: Connection, holder_id: str) -> Wallet | None:
    """The holder's wallet, or None."""
    row = conn.execute(
        select(accounts).where(accounts.c.id == holder_id, accounts.c.kind == "wallet")
    ).first()
    if row is None:
        return None
    account = _account(row)
    return Wallet(holder_id, account.currency, account.balance_minor, account.available_minor)


def top_up(
    conn: Connection,
    *,
    holder_id: str,
    amount_minor: int,
    currency: str,
    idempotency_key: str,
    now: datetime,
) -> TopUpResult:
    """Credit the wallet from its currency's funding account, once per (holder, key)."""
    ledger.assert_id(holder_id)
    ledger.assert_id(idempotency_key)
    ledger.assert_amount(amount_minor)
    ledger.assert_time(now)
    fingerprint = ledger.top_up_fingerprint(amount_minor, currency)
    funding_id = ledger.funding_account_id(currency)
    moved = _move(conn, TransferKind.TOP_UP, funding_id, holder_id, currency, amount_minor)
    if moved is None:
        earlier = _earlier_top_up(conn, holder_id, idempotency_key, fingerprint)
        if earlier is not None:
            return earlier
        raise _refusal(conn, [holder_id, funding_id], currency, funding_id, amount_minor)
    _, debits_posted, credits_posted, debits_pending, *_ = moved.rows[holder_id]
    balance_minor = credits_posted - debits_posted
    result = TopUpResult(
        holder_id, currency, amount_minor, balance_minor, balance_minor - debits_pending
    )
    recorded = conn.execute(
        _INSERT_TOP_UP[conn.dialect.name],
        {
            "holder_id": holder_id,
            "idempotency_key": idempotency_key,
            "request_sha256": fingerprint,
            "amount_minor": amount_minor,
            "currency": currency,
            "balance_minor": result.balance_minor,
            "available_minor": result.available_minor,
            "created_at": _utc(now),
        },
    ).first()
    if recorded is None:  # the key was used before, perhaps by a concurrent transaction
        _undo(conn, moved)
        earlier = _earlier_top_up(conn, holder_id, idempotency_key, fingerprint)
        assert earlier is not None
        return earlier
    _INSERT_TRANSFER.rows(
        conn,
        _journal(
            TransferKind.TOP_UP,
            funding_id,
            holder_id,
            amount_minor,
            currency,
            now,
            idempotency_key=idempotency_key,
        ),
    )
    return result


# --- payments ------------------------------------------------------------------------------------


def pay(
    conn: Connection,
    *,
    payer_id: str,
    payee_id: str,
    amount_minor: int,
    currency: str,
    payment_id: str,
    order_id: str,
    now: datetime,
) -> Payment:
    """Move money from payer to payee now; the same payment id and request again moves nothing."""
    request = PaymentRequest(
        PaymentType.PAY, payment_id, order_id, payer_id, payee_id, amount_minor, currency
    )
    return place(conn, request, now)


def hold(
    conn: Connection,
    *,
    payer_id: str,
    payee_id: str,
    amount_minor: int,
    currency: str,
    payment_id: str,
    order_id: str,
    expires_at: datetime,
    now: datetime,
) -> Payment:
    """Reserve money for the payee until `expires_at`: available drops, balance does not."""
    request = PaymentRequest(
        PaymentType.HOLD,
        payment_id,
        order_id,
        payer_id,
        payee_id,
        amount_minor,
        currency,
        expires_at,
    )
    return place(conn, request, now)


def place(conn: Connection, request: PaymentRequest, now: datetime) -> Payment:
    """Carry out a pay or hold request (see `pay` and `hold`)."""
    journal: list[dict[str, Any]] = []
    payment = _place(conn, request, now, journal)
    if journal:
        _INSERT_TRANSFER.rows(conn, journal[0])
    return payment


def _place(
    conn: Connection, request: PaymentRequest, now: datetime, journal: list[dict[str, Any]]
) -> Payment:
    """`place`, leaving the journal row to append to `journal` (batches insert them at once)."""
    payment = ledger.open_payment(request, now)
    payment = replace(
        payment,
        created_at=_utc(payment.created_at),
        expires_at=None if request.expires_at is None else _utc(request.expires_at),
    )
    if request.expires_at is not None and request.expires_at <= now:
        earlier = get_payment(conn, request.payment_id)  # a replay, after the hold expired
        assert earlier is not None, "a new hold must expire in the future"
        return ledger.replay(earlier, request)
    # The payment row goes first: a replay is told apart before any account is locked, and the
    # accounts stay locked only for the journal insert and the commit that follow the move.
    if not _INSERT_PAYMENT.rows(conn, _payment_row(payment)):  # a known id, maybe concurrently
        earlier = get_payment(conn, request.payment_id)
        assert earlier is not None
        return ledger.replay(earlier, request)
    kind = TransferKind(request.type.value)
    payer_id, payee_id = request.payer_id, request.payee_id
    moved = _move(conn, kind, payer_id, payee_id, request.currency, request.amount_minor)
    if moved is None:
        _DELETE_PAYMENT.rows(conn, {"p_payment_id": request.payment_id})  # inserted just above
        raise _refusal(
            conn,
            [request.payer_id, request.payee_id],
            request.currency,
            request.payer_id,
            request.amount_minor,
        )
    journal.append(
        _journal(
            kind,
            request.payer_id,
            request.payee_id,
            request.amount_minor,
            request.currency,
            now,
            payment_id=request.payment_id,
            expires_at=request.expires_at,
        )
    )
    return payment


def place_payments(
    conn: Connection, requests: Sequence[PaymentRequest], now: datetime
) -> list[Payment | WalletRefusal]:
    """Carry out many pay and hold requests in the caller's one transaction (group commit).

    A refusal is returned in its request's place and leaves nothing behind, so the rest commit.
    The journal rows go in with one multi-row INSERT at the end: 2 statements a payment, plus 1.
    """
    results: list[Payment | WalletRefusal] = []
    journal: list[dict[str, Any]] = []
    for request in requests:
        try:
            results.append(_place(conn, request, now, journal))
        except WalletRefusal as refusal:
            results.append(refusal)
    if journal:
        conn.execute(insert(transfers), journal)
    return results


def capture(
    conn: Connection,
    *,
    payment_id: str,
    amount_minor: int,
    now: datetime,
    payee_id: str | None = None,
    currency: str | None = None,
) -> Payment:
    """Post up to the held amount to the payee and release the rest to the payer."""
    ledger.assert_amount(amount_minor)
    captured = _resolve_hold(
        conn, TransferKind.CAPTURE, payment_id, amount_minor, now, payee_id, currency
    )
    _post_resolution(conn, TransferKind.CAPTURE, captured, amount_minor, now)
    return captured


def void(
    conn: Connection,
    *,
    payment_id: str,
    now: datetime,
    payee_id: str | None = None,
    currency: str | None = None,
) -> Payment:
    """Release a whole hold back to the payer."""
    voided = _resolve_hold(conn, TransferKind.VOID, payment_id, 0, now, payee_id, currency)
    _post_resolution(conn, TransferKind.VOID, voided, voided.amount_minor, now)
    return voided


def expire_due_holds(conn: Connection, now: datetime, limit: int = 100) -> list[Payment]:
    """Void up to `limit` holds whose expiry has come, oldest first; returns them."""
    ledger.assert_time(now)
    assert limit > 0
    due = conn.execute(_DUE, {"p_now": _utc(now), "p_limit": limit}).scalars().all()
    if not due:
        return []
    rows = conn.execute(_EXPIRE, {"p_ids": due}).all()
    expired = sorted((_payment(row) for row in rows), key=lambda p: (p.expires_at, p.payment_id))
    journal = []
    for payment in expired:
        moved = _move(
            conn,
            TransferKind.EXPIRE,
            payment.payer_id,
            payment.payee_id,
            payment.currency,
            payment.amount_minor,
            payment.amount_minor,
        )
        assert moved is not None, f"releasing {payment.payment_id} found no accounts"
        journal.append(
            _journal(
                TransferKind.EXPIRE,
                payment.payer_id,
                payment.payee_id,
                payment.amount_minor,
                payment.currency,
                now,
                payment_id=payment.payment_id,
                pending_id=payment.payment_id,
            )
        )
    if journal:
        conn.execute(insert(transfers), journal)
    return expired


def refund(
    conn: Connection,
    *,
    payment_id: str,
    amount_minor: int,
    now: datetime,
    payee_id: str | None = None,
    currency: str | None = None,
) -> Payment:
    """Send part of a pay or capture back from the payee to the payer."""
    ledger.assert_amount(amount_minor)
    ledger.assert_time(now)
    statement = _refund_statement(payee_id is not None, currency is not None)
    params = {
        "p_payment_id": payment_id,
        "p_amount": amount_minor,
        "p_payee_id": payee_id,
        "p_currency": currency,
    }
    row = _first_or_explain(
        conn,
        statement,
        params,
        lambda payment: ledger.refund(ledger.find(payment, payee_id, currency), amount_minor),
    )
    refunded = _payment(row)
    moved = _move(
        conn,
        TransferKind.REFUND,
        refunded.payee_id,
        refunded.payer_id,
        refunded.currency,
        amount_minor,
    )
    if moved is None:
        conn.execute(_UNREFUND, {"p_payment_id": payment_id, "p_amount": amount_minor})
        raise _refusal(
            conn,
            [refunded.payee_id, refunded.payer_id],
            refunded.currency,
            refunded.payee_id,
            amount_minor,
        )
    _INSERT_TRANSFER.rows(
        conn,
        _journal(
            TransferKind.REFUND,
            refunded.payee_id,
            refunded.payer_id,
            amount_minor,
            refunded.currency,
            now,
            payment_id=payment_id,
        ),
    )
    return refunded


def get_payment(conn: Connection, payment_id: str) -> Payment | None:
    """The payment, or None."""
    row = conn.execute(select(payments).where(payments.c.payment_id == payment_id)).first()
    return None if row is None else _payment(row)


def list_payments(conn: Connection, holder_id: str, limit: int = 50) -> list[Payment]:
    """The holder's payments as payer or payee, newest first."""
    rows = conn.execute(
        select(payments)
        .where(sa.or_(payments.c.payer_id == holder_id, payments.c.payee_id == holder_id))
        .order_by(payments.c.seq.desc())
        .limit(limit)
    )
    return [_payment(row) for row in rows]


# --- moving money --------------------------------------------------------------------------------


def _move(
    conn: Connection,
    kind: TransferKind,
    debit_id: str,
    credit_id: str,
    currency: str,
    amount_minor: int,
    held_minor: int = 0,
) -> _Moved | None:
    """Apply a transfer to both accounts, or to neither (returns None).

    One single-row UPDATE per account, always in the same order (sorted ids), so that transfers
    in opposite directions cannot deadlock: a single UPDATE of both rows locks them in whatever
    order its plan scans them, and re-locking an old row version inside one statement can
    deadlock against waiters queued on it.
    """
    debit, credit = ledger.transfer_deltas(kind, amount_minor, held_minor)
    moved = _Moved(currency, {debit_id: debit, credit_id: credit}, {})
    for account_id in sorted(moved.deltas):
        delta = moved.deltas[account_id]
        need = ledger.required_available(delta) if account_id == debit_id else 0
        row = _MOVE_FAST.rows(
            conn,
            {
                "p_id": account_id,
                "p_currency": currency,
                "p_need": need,
                **{f"p_{n}": getattr(delta, n) for n in _COUNTERS},
            },
        )
        if not row:
            _undo(conn, moved)
            return None
        moved.rows[account_id] = row[0]
    return moved


def _undo(conn: Connection, moved: _Moved) -> None:
    for account_id in moved.rows:
        back = -moved.deltas[account_id]
        _MOVE_FAST.rows(
            conn,
            {
                "p_id": account_id,
                "p_currency": moved.currency,
                "p_need": 0,
                **{f"p_{n}": getattr(back, n) for n in _COUNTERS},
            },
        )


def _refusal(
    conn: Connection, account_ids: list[str], currency: str, debit_id: str, need_minor: int
) -> WalletRefusal:
    found = {
        row.id: _account(row)
        for row in conn.execute(select(accounts).where(accounts.c.id.in_(account_ids)))
    }
    return ledger.explain_refused_move(
        [(account_id, found.get(account_id)) for account_id in account_ids],
        currency,
        debit_id,
        need_minor,
    )


def _resolve_hold(
    conn: Connection,
    kind: TransferKind,
    payment_id: str,
    amount_minor: int,
    now: datetime,
    payee_id: str | None,
    currency: str | None,
) -> Payment:
    ledger.assert_time(now)
    statement = _resolve_statement(kind, payee_id is not None, currency is not None)
    params = {
        "p_payment_id": payment_id,
        "p_now": _utc(now),
        "p_amount": amount_minor,
        "p_payee_id": payee_id,
        "p_currency": currency,
    }

    def explain(payment: Payment | None) -> None:
        found = ledger.find(payment, payee_id, currency)
        if kind is TransferKind.CAPTURE:
            ledger.capture(found, amount_minor, now)
        else:
            ledger.void(found, now)

    return _payment(_first_or_explain(conn, statement, params, explain))


def _first_or_explain(
    conn: Connection, statement: Any, params: dict[str, Any], explain: Any
) -> Row[Any]:
    """Run a conditional update of one payment; when it matches nothing, raise the reason."""
    for _ in range(3):
        row = conn.execute(statement, params).first()
        if row is not None:
            return row
        explain(get_payment(conn, params["p_payment_id"]))
        # The read found nothing wrong: the payment was committed after the update looked.
    raise RuntimeError(f"payment {params['p_payment_id']} kept changing under the update")


def _post_resolution(
    conn: Connection, kind: TransferKind, hold_: Payment, amount_minor: int, now: datetime
) -> None:
    _INSERT_TRANSFER.rows(
        conn,
        _journal(
            kind,
            hold_.payer_id,
            hold_.payee_id,
            amount_minor,
            hold_.currency,
            now,
            payment_id=hold_.payment_id,
            pending_id=hold_.payment_id,
        ),
    )
    # Last, so that the accounts stay locked only until the commit; it cannot be refused.
    moved = _move(
        conn, kind, hold_.payer_id, hold_.payee_id, hold_.currency, amount_minor, hold_.amount_minor
    )
    assert moved is not None, f"resolving {hold_.payment_id} found no accounts"


@functools.cache
def _resolve_statement(kind: TransferKind, by_payee: bool, by_currency: bool) -> Any:
    p = payments.c
    where = [
        p.payment_id == bindparam("p_payment_id"),
        p.type == PaymentType.HOLD.value,
        p.status == PaymentStatus.HELD.value,
        p.expires_at > bindparam("p_now"),
    ]
    if kind is TransferKind.CAPTURE:
        where.append(p.amount_minor >= bindparam("p_amount"))
        values = {
            "status": PaymentStatus.CAPTURED.value,
            "captured_amount_minor": bindparam("p_amount"),
        }
    else:
        values = {"status": PaymentStatus.VOIDED.value}
    return (
        update(payments)
        .where(*where, *_named(by_payee, by_currency))
        .values(values)
        .returning(*payments.c)
    )


@functools.cache
def _refund_statement(by_payee: bool, by_currency: bool) -> Any:
    p = payments.c
    return (
        update(payments)
        .where(
            p.payment_id == bindparam("p_payment_id"),
            p.captured_amount_minor - p.refunded_amount_minor >= bindparam("p_amount"),
            *_named(by_payee, by_currency),
        )
        .values(refunded_amount_minor=p.refunded_amount_minor + bindparam("p_amount"))
        .returning(*payments.c)
    )


def _named(by_payee: bool, by_currency: bool) -> list[Any]:
    where = []
    if by_payee:
        where.append(payments.c.payee_id == bindparam("p_payee_id"))
    if by_currency:
        where.append(payments.c.currency == bindparam("p_currency"))
    return where


def _earlier_top_up(
    conn: Connection, holder_id: str, idempotency_key: str, fingerprint: str
) -> TopUpResult | None:
    row = conn.execute(
        select(top_ups).where(
            top_ups.c.holder_id == holder_id,
            top_ups.c.idempotency_key == idempotency_key,
        )
    ).first()
    if row is None:
        return None
    if row.request_sha256 != fingerprint:
        raise IdempotencyConflict(f"top-up key {idempotency_key} was used for another request")
    return TopUpResult(
        holder_id, row.currency, row.amount_minor, row.balance_minor, row.available_minor
    )


# --- rows ----------------------------------------------------------------------------------------


def _utc(value: datetime) -> datetime:
    # SQLite stores a DateTime without its offset, so every stored time is UTC.
    return value.astimezone(UTC)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _account_row(account_id: str, kind: str, currency: str, now: datetime) -> dict[str, Any]:
    return {
        "id": account_id,
        "kind": kind,
        "currency": currency,
        "debits_must_not_exceed_credits": kind == "wallet",
        "created_at": _utc(now),
        **dict.fromkeys(_COUNTERS, 0),
    }


def _account(row: Row[Any]) -> Account:
    return Account(
        row.id,
        row.currency,
        bool(row.debits_must_not_exceed_credits),
        *(getattr(row, name) for name in _COUNTERS),
    )


def _journal(
    kind: TransferKind,
    debit_id: str,
    credit_id: str,
    amount_minor: int,
    currency: str,
    now: datetime,
    *,
    payment_id: str | None = None,
    pending_id: str | None = None,
    expires_at: datetime | None = None,
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    return {
        "kind": kind.value,
        "payment_id": payment_id,
        "pending_id": pending_id,
        "idempotency_key": idempotency_key,
        "debit_account_id": debit_id,
        "credit_account_id": credit_id,
        "amount_minor": amount_minor,
        "currency": currency,
        "created_at": _utc(now),
        "expires_at": None if expires_at is None else _utc(expires_at),
    }


def _payment_row(payment: Payment) -> dict[str, Any]:
    return {
        "payment_id": payment.payment_id,
        "order_id": payment.order_id,
        "payer_id": payment.payer_id,
        "payee_id": payment.payee_id,
        "type": payment.type.value,
        "amount_minor": payment.amount_minor,
        "captured_amount_minor": payment.captured_amount_minor,
        "refunded_amount_minor": payment.refunded_amount_minor,
        "status": payment.status.value,
        "currency": payment.currency,
        "created_at": _utc(payment.created_at),
        "expires_at": None if payment.expires_at is None else _utc(payment.expires_at),
    }


def _payment(row: Row[Any]) -> Payment:
    return Payment(
        payment_id=row.payment_id,
        order_id=row.order_id,
        payer_id=row.payer_id,
        payee_id=row.payee_id,
        type=PaymentType(row.type),
        amount_minor=row.amount_minor,
        captured_amount_minor=row.captured_amount_minor,
        refunded_amount_minor=row.refunded_amount_minor,
        status=PaymentStatus(row.status),
        currency=row.currency,
        created_at=_aware(row.created_at),
        expires_at=None if row.expires_at is None else _aware(row.expires_at),
    )
