"""A random walk through top-ups, draws (automatic top-ups from a funding source that keeps a
floor), pays, holds, captures, voids, expiries and refunds.

Hypothesis drives the store on a real SQLite file and a real PostgreSQL schema (fresh for each
example) and keeps a plain model of what every wallet should hold. After every step the books
must reconcile (`check()`), each wallet and payment must equal the model, and a refused step, whose
transaction is committed anyway as the gateway would commit its result, must have changed nothing.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy import Connection, func, select

from gateway.db import Database
from tests.support.services import postgres_schema_url
from tests.support.wallets import HOLDERS, T0, snapshot
from tests.wallet.ledger_model import (
    LedgerModel,
    Refusal,
    amounts,
    currencies,
    holders,
    pairs,
    payee_names,
    ttls,
)
from wallet import draws, schema, store
from wallet.check import check
from wallet.errors import (
    CurrencyNotAllowed,
    IdempotencyConflict,
    InsufficientFunds,
    PaymentNotFound,
    RefundExceedsPayment,
    WalletRefusal,
)
from wallet.ledger import Payment, PaymentRequest, TopUpResult


class LedgerMachine(LedgerModel, RuleBasedStateMachine):
    """The store against a model of balances; `make_url` gives each example a fresh database."""

    make_url: Callable[[], str]

    def __init__(self) -> None:
        super().__init__()
        self.db = Database(self.make_url())
        with self.db.transaction() as conn:
            for holder, currency in HOLDERS.items():
                store.open_wallet(conn, holder_id=holder, currency=currency, now=T0)

    def teardown(self) -> None:
        self.db.dispose()

    def attempt(self, work: Callable[[Connection], Any], expected: Refusal, changes: bool) -> Any:
        """Run `work` in a committed transaction; check the refusal and that nothing else moved."""
        refusal: WalletRefusal | None = None
        with self.db.transaction() as conn:
            before = snapshot(conn)
            try:
                result = work(conn)
            except WalletRefusal as caught:
                refusal, result = caught, None
        assert type(refusal) is (expected or type(None)), (refusal, expected)
        if refusal is not None or not changes:
            with self.db.read() as conn:
                assert snapshot(conn) == before
        return result

    # --- rules -----------------------------------------------------------------------------------

    @initialize(
        amounts=st.lists(st.integers(1000, 8000), min_size=len(HOLDERS), max_size=len(HOLDERS))
    )
    def fund(self, amounts: list[int]) -> None:
        for holder, amount in zip(sorted(HOLDERS), amounts, strict=True):
            self.top_up(holder, amount, "initial", None)

    @rule(
        holder=holders,
        amount=st.integers(1, 5000),
        key=st.sampled_from(["k1", "k2", "k3"]),
        currency=currencies,
    )
    def top_up(self, holder: str, amount: int, key: str, currency: str | None) -> None:
        currency = currency or HOLDERS[holder]
        known = self.top_ups.get((holder, key))
        expected: Refusal = None
        if currency != HOLDERS[holder]:  # checked first, a reused key or not (422 before 409)
            expected = CurrencyNotAllowed
        elif known is not None:
            expected = None if known[:2] == (amount, currency) else IdempotencyConflict
        result = self.attempt(
            lambda c: store.top_up(
                c,
                holder_id=holder,
                amount_minor=amount,
                currency=currency,
                idempotency_key=key,
                now=self.now,
            ),
            expected,
            changes=known is None,
        )
        if expected is not None:
            return
        if known is not None:
            assert result == known[2]
            return
        self.balance[holder] += amount
        assert result == TopUpResult(
            holder, currency, amount, self.balance[holder], self.available(holder)
        )
        self.top_ups[holder, key] = (amount, currency, result)

    @rule(pair=pairs, amount=st.integers(1, 5000), floor=st.integers(0, 3000))
    def draw(self, pair: tuple[str, str], amount: int, floor: int) -> None:
        """An automatic top-up: `pair[0]` as a funding source that must keep `floor`."""
        source, wallet = pair
        fits = HOLDERS[source] == HOLDERS[wallet] and self.available(source) - amount >= floor
        moved = self.attempt(
            lambda c: draws.draw(
                c,
                source_id=source,
                wallet_id=wallet,
                currency=HOLDERS[source],
                amount_minor=amount,
                floor_minor=floor,
                payment_id=f"draw-{next(self.ids)}",
                now=self.now,
            ),
            None,
            changes=fits,
        )
        assert moved is fits
        if fits:
            self.balance[source] -= amount
            self.balance[wallet] += amount

    @rule(pair=pairs, amount=amounts, currency=currencies)
    def pay(self, pair: tuple[str, str], amount: int, currency: str | None) -> None:
        self.open_payment(self.new_request(pair, amount, currency, None))

    @rule(
        pair=pairs,
        amount=amounts,
        currency=currencies,
        ttl_s=st.sampled_from([86400, 3600, 900, 60]),
    )
    def hold(self, pair: tuple[str, str], amount: int, currency: str | None, ttl_s: int) -> None:
        self.open_payment(self.new_request(pair, amount, currency, ttl_s))

    def open_payment(self, request: PaymentRequest) -> None:
        expected = self.predict_open(request)
        payment = self.attempt(lambda c: store.place(c, request, self.now), expected, True)
        if expected is None:
            self.record_open(request)
            assert payment.payment_id == request.payment_id

    @rule(requests=st.lists(st.tuples(pairs, amounts, currencies, ttls), min_size=1, max_size=4))
    def open_a_batch(
        self, requests: list[tuple[tuple[str, str], int, str | None, int | None]]
    ) -> None:
        batch = [self.new_request(*args) for args in requests]
        with self.db.transaction() as conn:
            results = store.place_payments(conn, batch, self.now)
        for request, result in zip(batch, results, strict=True):
            expected = self.predict_open(request)
            assert type(result) is (expected or Payment), (result, expected)
            if expected is None:
                self.record_open(request)

    @precondition(lambda self: self.payments)
    @rule(data=st.data(), conflicting=st.booleans())
    def replay_payment(self, data: st.DataObject, conflicting: bool) -> None:
        payment_id = data.draw(st.sampled_from(sorted(self.payments)))
        request = self.payments[payment_id].request
        if conflicting:
            request = PaymentRequest(
                request.type,
                request.payment_id,
                request.order_id,
                request.payer_id,
                request.payee_id,
                request.amount_minor + 1,
                request.currency,
                request.expires_at,
            )
        expected = IdempotencyConflict if conflicting else None
        payment = self.attempt(lambda c: store.place(c, request, self.now), expected, False)
        if payment is not None:
            assert payment.status == self.payments[payment_id].status

    @precondition(lambda self: self.payments)
    @rule(data=st.data(), named=payee_names)
    def capture(self, data: st.DataObject, named: str) -> None:
        payment_id = self.draw_payment_id(data)
        amount = data.draw(st.integers(1, self.amount_of(payment_id) + 5))
        payee_id = self.payee_for(payment_id, named)
        expected = self.predict_resolution(payment_id, payee_id, amount)
        self.attempt(
            lambda c: store.capture(
                c, payment_id=payment_id, amount_minor=amount, now=self.now, payee_id=payee_id
            ),
            expected,
            True,
        )
        if expected is None:
            self.release(payment_id, "captured", amount)

    @precondition(lambda self: self.open_holds())
    @rule(data=st.data(), capture=st.booleans())
    def settle_an_open_hold(self, data: st.DataObject, capture: bool) -> None:
        """The common path, so that every run captures and voids many holds."""
        payment_id = data.draw(st.sampled_from(self.open_holds()))
        if capture:
            amount = data.draw(st.integers(1, self.amount_of(payment_id)))
            self.attempt(
                lambda c: store.capture(
                    c, payment_id=payment_id, amount_minor=amount, now=self.now
                ),
                None,
                True,
            )
            self.release(payment_id, "captured", amount)
        else:
            self.attempt(lambda c: store.void(c, payment_id=payment_id, now=self.now), None, True)
            self.release(payment_id, "voided")

    @precondition(lambda self: self.payments)
    @rule(data=st.data(), named=payee_names)
    def void(self, data: st.DataObject, named: str) -> None:
        payment_id = self.draw_payment_id(data)
        payee_id = self.payee_for(payment_id, named)
        expected = self.predict_resolution(payment_id, payee_id, None)
        self.attempt(
            lambda c: store.void(c, payment_id=payment_id, now=self.now, payee_id=payee_id),
            expected,
            True,
        )
        if expected is None:
            self.release(payment_id, "voided")

    @precondition(lambda self: self.payments)
    @rule(data=st.data(), named=payee_names)
    def refund(self, data: st.DataObject, named: str) -> None:
        payment_id = data.draw(
            st.sampled_from(
                [
                    *(pid for pid, e in sorted(self.payments.items()) if e.captured > e.refunded),
                    *self.payments,
                    "pay_missing",
                ]
            )
        )
        payment = self.payments.get(payment_id)
        refundable = payment.captured - payment.refunded if payment else 100
        amount = data.draw(st.integers(1, refundable + 5))
        payee_id = self.payee_for(payment_id, named)
        expected: Refusal = None
        if payment is None or payee_id not in (None, payment.request.payee_id):
            expected = PaymentNotFound
        elif amount > payment.captured - payment.refunded:
            expected = RefundExceedsPayment
        elif self.available(payment.request.payee_id) < amount:
            expected = InsufficientFunds
        self.attempt(
            lambda c: store.refund(
                c, payment_id=payment_id, amount_minor=amount, now=self.now, payee_id=payee_id
            ),
            expected,
            True,
        )
        if expected is None:
            assert payment is not None
            payment.refunded += amount
            self.balance[payment.request.payee_id] -= amount
            self.balance[payment.request.payer_id] += amount

    @rule(seconds=st.integers(1, 600))
    def advance_clock(self, seconds: int) -> None:
        self.now += timedelta(seconds=seconds)

    @rule(limit=st.integers(1, 4))
    def expire_due_holds(self, limit: int) -> None:
        due: list[tuple[datetime, str]] = sorted(
            (e.request.expires_at, payment_id)
            for payment_id, e in self.payments.items()
            if e.status == "held"
            and e.request.expires_at is not None
            and self.now >= e.request.expires_at
        )[:limit]
        expired = self.attempt(
            lambda c: store.expire_due_holds(c, self.now, limit), None, bool(due)
        )
        assert [p.payment_id for p in expired] == [payment_id for _, payment_id in due]
        for _, payment_id in due:
            self.release(payment_id, "expired")

    # --- invariants ------------------------------------------------------------------------------

    @invariant()
    def books_reconcile_and_match_the_model(self) -> None:
        p, t = schema.payments.c, schema.transfers.c
        with self.db.read() as conn:
            assert [str(breach) for breach in check(conn)] == []
            wallets = {holder: store.get_wallet(conn, holder) for holder in HOLDERS}
            rows = conn.execute(
                select(p.payment_id, p.status, p.captured_amount_minor, p.refunded_amount_minor)
            ).all()
            opened = conn.execute(
                select(func.count()).where(t.kind.in_(["pay", "hold"]))
            ).scalar_one()
        assert {
            holder: (w.balance_minor, w.available_minor)
            for holder, w in wallets.items()
            if w is not None
        } == {holder: (self.balance[holder], self.available(holder)) for holder in HOLDERS}
        assert all(self.available(holder) >= 0 for holder in HOLDERS)
        assert {row[0]: tuple(row[1:]) for row in rows} == {
            payment_id: (e.status, e.captured, e.refunded)
            for payment_id, e in self.payments.items()
        }
        assert opened == len(self.payments)  # a payment id never opens two payments


def machine_for(make_url: Callable[[], str]) -> type[LedgerMachine]:
    return type(
        "LedgerMachineOnThisDatabase", (LedgerMachine,), {"make_url": staticmethod(make_url)}
    )


# Sized for about 15 s on SQLite and 30 s on PostgreSQL on two busy cores; every example gets a
# fresh, migrated database.
SETTINGS = settings(
    max_examples=60,
    stateful_step_count=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)


@pytest.mark.slow
def test_ledger_never_loses_or_invents_a_cent_on_sqlite(tmp_path: Path) -> None:
    counter = itertools.count()

    def make_url() -> str:
        url = f"sqlite:///{tmp_path / f'machine-{next(counter)}.db'}"
        _migrate(url)
        return url

    run_state_machine_as_test(machine_for(make_url), settings=SETTINGS)


@pytest.mark.slow
@pytest.mark.postgres
def test_ledger_never_loses_or_invents_a_cent_on_postgres(postgres_database: str) -> None:
    def make_url() -> str:
        url = postgres_schema_url(postgres_database)
        _migrate(url)
        return url

    run_state_machine_as_test(machine_for(make_url), settings=settings(SETTINGS, max_examples=30))


def _migrate(url: str) -> None:
    database = Database(url)
    database.migrate()
    database.dispose()
