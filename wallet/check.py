"""Reconciliation: recompute the ledger from its journal and report every breach of its invariants.

`check(conn)` returns an empty list when the books are sound. It trusts no cached number: account
counters and the payments projection are recomputed from the append-only journal, and the rules
hold whatever the schema's constraints say. Run by the tests after every step and by
`kym ledger check`; it only reads, so it may run beside live traffic (inside one transaction it
sees one consistent state on PostgreSQL's REPEATABLE READ or SQLite's read transaction).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, select

from wallet.ledger import FUNDING_PREFIX, POSTING_KINDS, PaymentStatus, PaymentType, TransferKind
from wallet.schema import COUNTERS, accounts, payments, top_ups, transfers

_POSTING = sorted(k.value for k in POSTING_KINDS)
_OPENING = [TransferKind.PAY.value, TransferKind.HOLD.value]
_RESOLVING = [TransferKind.CAPTURE.value, TransferKind.VOID.value, TransferKind.EXPIRE.value]
_STATUS_AFTER = {
    None: PaymentStatus.HELD,
    TransferKind.CAPTURE.value: PaymentStatus.CAPTURED,
    TransferKind.VOID.value: PaymentStatus.VOIDED,
    TransferKind.EXPIRE.value: PaymentStatus.EXPIRED,
}


@dataclass(frozen=True)
class Breach:
    """One broken invariant: which rule, about what, and the numbers that disagree."""

    rule: str
    subject: str
    detail: str

    def __str__(self) -> str:
        return f"{self.rule}: {self.subject}: {self.detail}"


def check(conn: Connection) -> list[Breach]:
    """Every breach of the ledger's invariants; empty when the books reconcile."""
    return [
        *_accounts(conn),
        *_transfers(conn),
        *_resolutions(conn),
        *_refunds(conn),
        *_payments(conn),
        *_top_ups(conn),
    ]


# The statements are built once: building SQLAlchemy aliases costs more than running the query.
_t, _a, _p, _k = transfers.c, accounts.c, payments.c, top_ups.c
_resolution, _hold, _capture, _opening, _refund = (
    transfers.alias(name) for name in ("resolution", "hold", "capture", "opening", "refund")
)
_debit, _credit = accounts.alias("debit"), accounts.alias("credit")
_r, _h, _c, _o, _f = _resolution.c, _hold.c, _capture.c, _opening.c, _refund.c

_POSTED = (
    select(_t.debit_account_id, _t.credit_account_id, sa.func.sum(_t.amount_minor))
    .where(_t.kind.in_(_POSTING))
    .group_by(_t.debit_account_id, _t.credit_account_id)
)
_PENDING = (
    select(_t.debit_account_id, _t.credit_account_id, sa.func.sum(_t.amount_minor))
    .select_from(transfers.outerjoin(_resolution, _r.pending_id == _t.payment_id))
    .where(_t.kind == TransferKind.HOLD.value, _r.id.is_(None))
    .group_by(_t.debit_account_id, _t.credit_account_id)
)


def _accounts(conn: Connection) -> Iterator[Breach]:
    """Per currency the accounts sum to zero, no wallet overdraws, counters equal the journal."""
    rows = conn.execute(select(accounts)).all()
    net: dict[str, int] = defaultdict(int)
    pending: dict[str, int] = defaultdict(int)
    for row in rows:
        net[row.currency] += row.credits_posted - row.debits_posted
        pending[row.currency] += row.debits_pending - row.credits_pending
        available = row.credits_posted - row.debits_posted - row.debits_pending
        if row.debits_must_not_exceed_credits and available < 0:
            yield Breach("overdraft", row.id, f"available {available} < 0")
        if bool(row.debits_must_not_exceed_credits) != (row.kind == "wallet"):
            yield Breach("overdraft", row.id, f"a {row.kind} with the wrong overdraft flag")
    for currency in net:
        if net[currency] != 0:
            yield Breach(
                "conservation", currency, f"posted credits - debits = {net[currency]}, not 0"
            )
        if pending[currency] != 0:
            yield Breach(
                "conservation",
                currency,
                f"pending debits - pending credits = {pending[currency]}, not 0",
            )
    expected: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(COUNTERS, 0))
    for (debit_id, credit_id, total), (debits, credits) in (
        *((row, ("debits_posted", "credits_posted")) for row in conn.execute(_POSTED)),
        *((row, ("debits_pending", "credits_pending")) for row in conn.execute(_PENDING)),
    ):
        expected[debit_id][debits] += total
        expected[credit_id][credits] += total
    for account_id in expected.keys() - {row.id for row in rows}:
        yield Breach("counters", account_id, "the journal names an account that does not exist")
    for row in rows:
        want = expected.get(row.id, dict.fromkeys(COUNTERS, 0))
        got = {name: getattr(row, name) for name in COUNTERS}
        if got != want:
            yield Breach("counters", row.id, f"cached {got} != journal {want}")


_MIXED_CURRENCIES = (
    select(_t.id, _t.currency, _debit.c.currency, _credit.c.currency)
    .join(_debit, _debit.c.id == _t.debit_account_id)
    .join(_credit, _credit.c.id == _t.credit_account_id)
    .where(sa.or_(_debit.c.currency != _t.currency, _credit.c.currency != _t.currency))
)
_MALFORMED = select(transfers).where(
    sa.or_(
        _t.amount_minor <= 0,
        sa.and_(
            _t.kind == TransferKind.TOP_UP.value,
            sa.or_(
                _t.idempotency_key.is_(None),
                _t.debit_account_id != sa.literal(FUNDING_PREFIX) + _t.currency,
            ),
        ),
        sa.and_(_t.kind != TransferKind.TOP_UP.value, _t.payment_id.is_(None)),
        sa.and_(_t.kind == TransferKind.COLLECT.value, _t.idempotency_key.is_(None)),
        sa.and_(_t.kind.in_(_RESOLVING), _t.pending_id.is_distinct_from(_t.payment_id)),
        sa.and_(_t.kind.not_in(_RESOLVING), _t.pending_id.is_not(None)),
        sa.and_(_t.kind == TransferKind.HOLD.value, _t.expires_at.is_(None)),
        _t.kind.not_in([k.value for k in TransferKind]),
    )
)
_OPENED_TWICE = (
    select(_t.payment_id, sa.func.count())
    .where(_t.kind.in_(_OPENING))
    .group_by(_t.payment_id)
    .having(sa.func.count() > 1)
)


def _transfers(conn: Connection) -> Iterator[Breach]:
    """Each transfer stays within one currency and has the references its kind needs."""
    for transfer_id, currency, debit_currency, credit_currency in conn.execute(_MIXED_CURRENCIES):
        yield Breach(
            "currency",
            f"transfer {transfer_id}",
            f"{currency} between {debit_currency} and {credit_currency} accounts",
        )
    for row in conn.execute(_MALFORMED):
        yield Breach("journal", f"transfer {row.id}", f"malformed {row.kind}")
    for payment_id, count in conn.execute(_OPENED_TWICE):
        yield Breach("journal", payment_id, f"opened {count} times")


_RESOLVED_TWICE = (
    select(_t.pending_id, sa.func.count())
    .where(_t.pending_id.is_not(None))
    .group_by(_t.pending_id)
    .having(sa.func.count() > 1)
)
_BAD_RESOLUTIONS = (
    select(_t.id, _t.kind, _t.pending_id, _t.amount_minor, _h.amount_minor.label("held"))
    .select_from(
        transfers.outerjoin(
            _hold, sa.and_(_h.payment_id == _t.pending_id, _h.kind == TransferKind.HOLD.value)
        )
    )
    .where(
        _t.kind.in_(_RESOLVING),
        sa.or_(
            _h.id.is_(None),
            _h.debit_account_id != _t.debit_account_id,
            _h.credit_account_id != _t.credit_account_id,
            _h.currency != _t.currency,
            sa.and_(_t.kind == TransferKind.CAPTURE.value, _t.amount_minor > _h.amount_minor),
            sa.and_(_t.kind != TransferKind.CAPTURE.value, _t.amount_minor != _h.amount_minor),
        ),
    )
)


def _resolutions(conn: Connection) -> Iterator[Breach]:
    """Each hold is resolved at most once, by a transfer that matches it; captured <= held."""
    for payment_id, count in conn.execute(_RESOLVED_TWICE):
        yield Breach("resolution", payment_id, f"hold resolved {count} times")
    for row in conn.execute(_BAD_RESOLUTIONS):
        what = "no such hold" if row.held is None else f"{row.amount_minor} of {row.held} held"
        yield Breach("resolution", row.pending_id, f"{row.kind} (transfer {row.id}): {what}")


_REFUNDS = (
    select(
        _o.payment_id,
        _o.kind,
        _o.amount_minor,
        _c.amount_minor.label("captured"),
        sa.func.sum(_t.amount_minor).label("refunded"),
        sa.func.sum(
            sa.case(
                (
                    sa.and_(
                        _t.debit_account_id == _o.credit_account_id,
                        _t.credit_account_id == _o.debit_account_id,
                        _t.currency == _o.currency,
                    ),
                    0,
                ),
                else_=1,
            )
        ).label("misdirected"),
    )
    .select_from(
        transfers.outerjoin(
            _opening, sa.and_(_o.payment_id == _t.payment_id, _o.kind.in_(_OPENING))
        ).outerjoin(
            _capture, sa.and_(_c.pending_id == _o.payment_id, _c.kind == TransferKind.CAPTURE.value)
        )
    )
    .where(_t.kind == TransferKind.REFUND.value)
    .group_by(_t.payment_id, _o.payment_id, _o.kind, _o.amount_minor, _c.amount_minor)
)


def _refunds(conn: Connection) -> Iterator[Breach]:
    """Refunds run payee to payer and never exceed what was paid or captured."""
    for row in conn.execute(_REFUNDS):
        if row.payment_id is None:
            yield Breach("refund", "?", "a refund of a payment the journal never opened")
            continue
        paid = row.amount_minor if row.kind == TransferKind.PAY.value else (row.captured or 0)
        if row.refunded > paid:
            yield Breach("refund", row.payment_id, f"refunded {row.refunded} > paid {paid}")
        if row.misdirected:
            yield Breach("refund", row.payment_id, "a refund not from payee to payer")


_REFUNDED = (
    select(_f.payment_id, sa.func.sum(_f.amount_minor).label("total"))
    .where(_f.kind == TransferKind.REFUND.value)
    .group_by(_f.payment_id)
    .subquery()
)
_FROM_JOURNAL = (
    select(
        _t.payment_id,
        _t.kind,
        _t.debit_account_id,
        _t.credit_account_id,
        _t.amount_minor,
        _t.currency,
        _t.created_at,
        _t.expires_at,
        _r.kind.label("resolution"),
        _r.amount_minor.label("resolved"),
        _REFUNDED.c.total.label("refunded"),
    )
    .select_from(
        transfers.outerjoin(_resolution, _r.pending_id == _t.payment_id).outerjoin(
            _REFUNDED, _REFUNDED.c.payment_id == _t.payment_id
        )
    )
    .where(_t.kind.in_(_OPENING))
)


def _payments(conn: Connection) -> Iterator[Breach]:
    """The payments projection equals what the journal says, row for row."""
    expected = dict(_payments_from_journal(conn))
    found = set()
    for row in conn.execute(select(payments)):
        found.add(row.payment_id)
        want = expected.get(row.payment_id)
        got = {
            "payer_id": row.payer_id,
            "payee_id": row.payee_id,
            "type": row.type,
            "amount_minor": row.amount_minor,
            "captured_amount_minor": row.captured_amount_minor,
            "refunded_amount_minor": row.refunded_amount_minor,
            "status": row.status,
            "currency": row.currency,
            "created_at": _utc(row.created_at),
            "expires_at": _utc(row.expires_at),
        }
        if want is None:
            yield Breach("payments", row.payment_id, "no pay or hold in the journal")
            continue
        differ = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
        if differ:
            yield Breach("payments", row.payment_id, f"projection != journal: {differ}")
    for payment_id in expected.keys() - found:
        yield Breach("payments", payment_id, "in the journal but not in payments")


def _payments_from_journal(conn: Connection) -> Iterator[tuple[str, dict[str, Any]]]:
    for row in conn.execute(_FROM_JOURNAL):
        is_pay = row.kind == TransferKind.PAY.value
        if is_pay:
            status, captured = PaymentStatus.COMPLETED, row.amount_minor
        else:
            status = _STATUS_AFTER.get(row.resolution, PaymentStatus.HELD)
            captured = row.resolved if status is PaymentStatus.CAPTURED else 0
        yield (
            row.payment_id,
            {  # the journal keeps no order ids: those are not compared
                "payer_id": row.debit_account_id,
                "payee_id": row.credit_account_id,
                "type": PaymentType.PAY.value if is_pay else PaymentType.HOLD.value,
                "amount_minor": row.amount_minor,
                "captured_amount_minor": captured,
                "refunded_amount_minor": row.refunded or 0,
                "status": status.value,
                "currency": row.currency,
                "created_at": _utc(row.created_at),
                "expires_at": _utc(row.expires_at),
            },
        )


_KEYED_TOP_UPS = select(
    _k.holder_id,
    _k.idempotency_key,
    _k.amount_minor,
    _k.currency,
    _t.amount_minor.label("moved"),
    _t.currency.label("moved_currency"),
).select_from(
    top_ups.outerjoin(
        transfers,
        sa.and_(
            _t.kind == TransferKind.TOP_UP.value,
            _t.credit_account_id == _k.holder_id,
            _t.idempotency_key == _k.idempotency_key,
        ),
    )
)
_UNKEYED_TOP_UPS = (
    select(_t.id)
    .select_from(
        transfers.outerjoin(
            top_ups,
            sa.and_(_k.holder_id == _t.credit_account_id, _k.idempotency_key == _t.idempotency_key),
        )
    )
    .where(_t.kind == TransferKind.TOP_UP.value, _k.holder_id.is_(None))
)


def _top_ups(conn: Connection) -> Iterator[Breach]:
    """Each remembered top-up key has exactly its one journal transfer, and the reverse."""
    for row in conn.execute(_KEYED_TOP_UPS):
        if (row.moved, row.moved_currency) != (row.amount_minor, row.currency):
            yield Breach(
                "top_up",
                f"{row.holder_id}/{row.idempotency_key}",
                f"key says {row.amount_minor} {row.currency}, journal {row.moved}",
            )
    for row in conn.execute(_UNKEYED_TOP_UPS):
        yield Breach("top_up", f"transfer {row.id}", "a top-up without its idempotency key")


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
