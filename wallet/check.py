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

from wallet.ledger import FUNDING_PREFIX, PaymentStatus, PaymentType, TransferKind
from wallet.store import accounts, payments, top_ups, transfers

_COUNTERS = ("debits_posted", "credits_posted", "debits_pending", "credits_pending")
_POSTING = [k.value for k in (TransferKind.TOP_UP, TransferKind.PAY, TransferKind.CAPTURE,
                              TransferKind.REFUND)]
_OPENING = [TransferKind.PAY.value, TransferKind.HOLD.value]
_RESOLVING = [TransferKind.CAPTURE.value, TransferKind.VOID.value, TransferKind.EXPIRE.value]
_STATUS_AFTER = {
    None: PaymentStatus.HELD, TransferKind.CAPTURE.value: PaymentStatus.CAPTURED,
    TransferKind.VOID.value: PaymentStatus.VOIDED, TransferKind.EXPIRE.value: PaymentStatus.EXPIRED,
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
        *_conservation(conn),
        *_overdrafts(conn),
        *_counters(conn),
        *_transfers(conn),
        *_resolutions(conn),
        *_refunds(conn),
        *_payments(conn),
        *_top_ups(conn),
    ]


def _conservation(conn: Connection) -> Iterator[Breach]:
    a = accounts.c
    rows = conn.execute(
        select(a.currency, sa.func.sum(a.credits_posted - a.debits_posted),
               sa.func.sum(a.debits_pending), sa.func.sum(a.credits_pending))
        .group_by(a.currency)
    )
    for currency, net, debits_pending, credits_pending in rows:
        if net != 0:
            yield Breach("conservation", currency, f"posted credits - debits = {net}, not 0")
        if debits_pending != credits_pending:
            yield Breach("conservation", currency,
                         f"pending debits {debits_pending} != pending credits {credits_pending}")


def _overdrafts(conn: Connection) -> Iterator[Breach]:
    a = accounts.c
    for row in conn.execute(select(accounts).where(
        a.debits_must_not_exceed_credits,
        a.credits_posted - a.debits_posted - a.debits_pending < 0,
    )):
        available = row.credits_posted - row.debits_posted - row.debits_pending
        yield Breach("overdraft", row.id, f"available {available} < 0")
    for row in conn.execute(select(accounts).where(sa.or_(*(a[n] < 0 for n in _COUNTERS)))):
        yield Breach("counters", row.id, "a counter is negative")
    for row in conn.execute(select(accounts).where(
        a.debits_must_not_exceed_credits != (a.kind == "wallet"))
    ):
        yield Breach("overdraft", row.id, f"a {row.kind} with the wrong overdraft flag")


def _counters(conn: Connection) -> Iterator[Breach]:
    """Cached counters equal the sums over the journal."""
    t, resolution = transfers.c, transfers.alias("resolution")
    r = resolution.c
    expected: dict[str, dict[str, int]] = defaultdict(lambda: dict.fromkeys(_COUNTERS, 0))
    posted = select(t.debit_account_id, t.credit_account_id, sa.func.sum(t.amount_minor)).where(
        t.kind.in_(_POSTING)).group_by(t.debit_account_id, t.credit_account_id)
    pending = (
        select(t.debit_account_id, t.credit_account_id, sa.func.sum(t.amount_minor))
        .select_from(transfers.outerjoin(resolution, r.pending_id == t.payment_id))
        .where(t.kind == TransferKind.HOLD.value, r.id.is_(None))
        .group_by(t.debit_account_id, t.credit_account_id)
    )
    for debit_id, credit_id, total in conn.execute(posted):
        expected[debit_id]["debits_posted"] += total
        expected[credit_id]["credits_posted"] += total
    for debit_id, credit_id, total in conn.execute(pending):
        expected[debit_id]["debits_pending"] += total
        expected[credit_id]["credits_pending"] += total
    cached = {row.id: row for row in conn.execute(select(accounts))}
    for account_id in expected.keys() - cached.keys():
        yield Breach("counters", account_id, "the journal names an account that does not exist")
    for account_id, row in cached.items():
        want = expected.get(account_id, dict.fromkeys(_COUNTERS, 0))
        got = {name: getattr(row, name) for name in _COUNTERS}
        if got != want:
            yield Breach("counters", account_id, f"cached {got} != journal {want}")


def _transfers(conn: Connection) -> Iterator[Breach]:
    """Each transfer stays within one currency and has the references its kind needs."""
    t = transfers.c
    debit, credit = accounts.alias("debit"), accounts.alias("credit")
    mixed = (
        select(t.id, t.currency, debit.c.currency, credit.c.currency)
        .join(debit, debit.c.id == t.debit_account_id)
        .join(credit, credit.c.id == t.credit_account_id)
        .where(sa.or_(debit.c.currency != t.currency, credit.c.currency != t.currency))
    )
    for transfer_id, currency, debit_currency, credit_currency in conn.execute(mixed):
        yield Breach("currency", f"transfer {transfer_id}",
                     f"{currency} between {debit_currency} and {credit_currency} accounts")
    for row in conn.execute(select(transfers).where(sa.or_(
        t.amount_minor <= 0,
        sa.and_(t.kind == TransferKind.TOP_UP.value, sa.or_(
            t.idempotency_key.is_(None),
            t.debit_account_id != sa.literal(FUNDING_PREFIX) + t.currency,
        )),
        sa.and_(t.kind != TransferKind.TOP_UP.value, t.payment_id.is_(None)),
        sa.and_(t.kind.in_(_RESOLVING), t.pending_id.is_distinct_from(t.payment_id)),
        sa.and_(t.kind.not_in(_RESOLVING), t.pending_id.is_not(None)),
        sa.and_(t.kind == TransferKind.HOLD.value, t.expires_at.is_(None)),
        t.kind.not_in([k.value for k in TransferKind]),
    ))):
        yield Breach("journal", f"transfer {row.id}", f"malformed {row.kind}")
    opened = select(t.payment_id, sa.func.count()).where(t.kind.in_(_OPENING)).group_by(
        t.payment_id).having(sa.func.count() > 1)
    for payment_id, count in conn.execute(opened):
        yield Breach("journal", payment_id, f"opened {count} times")


def _resolutions(conn: Connection) -> Iterator[Breach]:
    """Each hold is resolved at most once, by a transfer that matches it; captured <= held."""
    t = transfers.c
    twice = select(t.pending_id, sa.func.count()).where(t.pending_id.is_not(None)).group_by(
        t.pending_id).having(sa.func.count() > 1)
    for payment_id, count in conn.execute(twice):
        yield Breach("resolution", payment_id, f"hold resolved {count} times")
    hold = transfers.alias("hold")
    h = hold.c
    rows = conn.execute(
        select(t.id, t.kind, t.pending_id, t.amount_minor, h.amount_minor.label("held"))
        .select_from(transfers.outerjoin(
            hold, sa.and_(h.payment_id == t.pending_id, h.kind == TransferKind.HOLD.value)))
        .where(t.kind.in_(_RESOLVING), sa.or_(
            h.id.is_(None),
            h.debit_account_id != t.debit_account_id,
            h.credit_account_id != t.credit_account_id,
            h.currency != t.currency,
            sa.and_(t.kind == TransferKind.CAPTURE.value, t.amount_minor > h.amount_minor),
            sa.and_(t.kind != TransferKind.CAPTURE.value, t.amount_minor != h.amount_minor),
        ))
    )
    for row in rows:
        what = "no such hold" if row.held is None else f"{row.amount_minor} of {row.held} held"
        yield Breach("resolution", row.pending_id, f"{row.kind} (transfer {row.id}): {what}")


def _refunds(conn: Connection) -> Iterator[Breach]:
    """Refunds run payee to payer and never exceed what was paid or captured."""
    opening, capture = transfers.alias("opening"), transfers.alias("capture")
    t, o, c = transfers.c, opening.c, capture.c
    rows = conn.execute(
        select(o.payment_id, o.kind, o.amount_minor, c.amount_minor.label("captured"),
               sa.func.sum(t.amount_minor).label("refunded"),
               sa.func.sum(sa.case((sa.and_(t.debit_account_id == o.credit_account_id,
                                            t.credit_account_id == o.debit_account_id,
                                            t.currency == o.currency), 0), else_=1))
               .label("misdirected"))
        .select_from(
            transfers.outerjoin(opening, sa.and_(o.payment_id == t.payment_id,
                                                 o.kind.in_(_OPENING)))
            .outerjoin(capture, sa.and_(c.pending_id == o.payment_id,
                                        c.kind == TransferKind.CAPTURE.value)))
        .where(t.kind == TransferKind.REFUND.value)
        .group_by(t.payment_id, o.payment_id, o.kind, o.amount_minor, c.amount_minor)
    )
    for row in rows:
        if row.payment_id is None:
            yield Breach("refund", "?", "a refund of a payment the journal never opened")
            continue
        paid = row.amount_minor if row.kind == TransferKind.PAY.value else (row.captured or 0)
        if row.refunded > paid:
            yield Breach("refund", row.payment_id, f"refunded {row.refunded} > paid {paid}")
        if row.misdirected:
            yield Breach("refund", row.payment_id, "a refund not from payee to payer")


def _payments(conn: Connection) -> Iterator[Breach]:
    """The payments projection equals what the journal says, row for row."""
    expected = dict(_payments_from_journal(conn))
    found = set()
    for row in conn.execute(select(payments)):
        found.add(row.payment_id)
        want = expected.get(row.payment_id)
        got = {
            "payer_id": row.payer_id, "payee_id": row.payee_id,
            "type": row.type, "amount_minor": row.amount_minor,
            "captured_amount_minor": row.captured_amount_minor,
            "refunded_amount_minor": row.refunded_amount_minor, "status": row.status,
            "currency": row.currency, "created_at": _utc(row.created_at),
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
    resolution, refund = transfers.alias("resolution"), transfers.alias("refund")
    o, r, f = transfers.c, resolution.c, refund.c
    refunded = (
        select(f.payment_id, sa.func.sum(f.amount_minor).label("total"))
        .where(f.kind == TransferKind.REFUND.value).group_by(f.payment_id).subquery()
    )
    rows = conn.execute(
        select(o.payment_id, o.kind, o.debit_account_id, o.credit_account_id, o.amount_minor,
               o.currency, o.created_at, o.expires_at, r.kind.label("resolution"),
               r.amount_minor.label("resolved"), refunded.c.total.label("refunded"))
        .select_from(
            transfers.outerjoin(resolution, r.pending_id == o.payment_id)
            .outerjoin(refunded, refunded.c.payment_id == o.payment_id))
        .where(o.kind.in_(_OPENING))
    )
    for row in rows:
        is_pay = row.kind == TransferKind.PAY.value
        if is_pay:
            status, captured = PaymentStatus.COMPLETED, row.amount_minor
        else:
            status = _STATUS_AFTER.get(row.resolution, PaymentStatus.HELD)
            captured = row.resolved if status is PaymentStatus.CAPTURED else 0
        yield row.payment_id, {  # the journal keeps no order ids: those are not compared
            "payer_id": row.debit_account_id, "payee_id": row.credit_account_id,
            "type": PaymentType.PAY.value if is_pay else PaymentType.HOLD.value,
            "amount_minor": row.amount_minor, "captured_amount_minor": captured,
            "refunded_amount_minor": row.refunded or 0, "status": status.value,
            "currency": row.currency, "created_at": _utc(row.created_at),
            "expires_at": _utc(row.expires_at),
        }


def _top_ups(conn: Connection) -> Iterator[Breach]:
    """Each remembered top-up key has exactly its one journal transfer, and the reverse."""
    t, k = transfers.c, top_ups.c
    keyed = (
        select(k.holder_id, k.idempotency_key, k.amount_minor, k.currency,
               t.amount_minor.label("moved"), t.currency.label("moved_currency"))
        .select_from(top_ups.outerjoin(transfers, sa.and_(
            t.kind == TransferKind.TOP_UP.value, t.credit_account_id == k.holder_id,
            t.idempotency_key == k.idempotency_key)))
    )
    for row in conn.execute(keyed):
        if (row.moved, row.moved_currency) != (row.amount_minor, row.currency):
            yield Breach("top_up", f"{row.holder_id}/{row.idempotency_key}",
                         f"key says {row.amount_minor} {row.currency}, journal {row.moved}")
    orphans = (
        select(t.id)
        .select_from(transfers.outerjoin(top_ups, sa.and_(
            k.holder_id == t.credit_account_id, k.idempotency_key == t.idempotency_key)))
        .where(t.kind == TransferKind.TOP_UP.value, k.holder_id.is_(None))
    )
    for row in conn.execute(orphans):
        yield Breach("top_up", f"transfer {row.id}", "a top-up without its idempotency key")


def _utc(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
