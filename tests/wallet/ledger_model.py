"""The plain model that the ledger's state machine checks the store against.

What every wallet should hold and every payment should be, and which refusal each step should
meet; it knows nothing of SQL. `LedgerMachine` (test_ledger_machine.py) drives both.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import timedelta

from hypothesis import strategies as st

from tests.support.wallets import HOLDERS, T0
from wallet.errors import (
    CaptureExceedsHold,
    CurrencyNotAllowed,
    HoldExpired,
    HoldNotOpen,
    InsufficientFunds,
    PaymentNotFound,
    WalletRefusal,
)
from wallet.ledger import PaymentRequest, PaymentType, TopUpResult

Refusal = type[WalletRefusal] | None
holders = st.sampled_from(sorted(HOLDERS))
_PAIRS = [(a, b) for a in sorted(HOLDERS) for b in sorted(HOLDERS) if a != b]
# Mostly pairs that share a currency, so that money moves; sometimes not, so that it is refused.
pairs = st.sampled_from(
    [pair for pair in _PAIRS if HOLDERS[pair[0]] == HOLDERS[pair[1]]] * 3 + _PAIRS
)
# None means the payer's own currency; naming one is mostly a way to be refused.
currencies = st.sampled_from([None, None, None, None, "EUR", "USD"])
amounts = st.integers(1, 2000)
payee_names = st.sampled_from(["none", "none", "right", "wrong"])
ttls = st.none() | st.sampled_from([86400, 3600, 900, 60])


@dataclass
class Expected:
    """What the model says one payment is."""

    request: PaymentRequest
    status: str
    captured: int = 0
    refunded: int = 0


class LedgerModel:
    """Balances, pending amounts, payments and top-up keys as the store should have them."""

    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.balance = dict.fromkeys(HOLDERS, 0)
        self.pending = dict.fromkeys(HOLDERS, 0)
        self.payments: dict[str, Expected] = {}
        self.top_ups: dict[tuple[str, str], tuple[int, str, TopUpResult]] = {}
        self.ids = itertools.count()

    def available(self, holder: str) -> int:
        return self.balance[holder] - self.pending[holder]

    def amount_of(self, payment_id: str) -> int:
        expected = self.payments.get(payment_id)
        return expected.request.amount_minor if expected else 100

    def payee_for(self, payment_id: str, named: str) -> str | None:
        expected = self.payments.get(payment_id)
        right = expected.request.payee_id if expected else "mer_x"
        if named == "none":
            return None
        return right if named == "right" else next(h for h in sorted(HOLDERS) if h != right)

    def open_holds(self) -> list[str]:
        """Holds that can still be captured or voided."""
        return [
            pid
            for pid, e in sorted(self.payments.items())
            if e.status == "held"
            and e.request.expires_at is not None
            and self.now < e.request.expires_at
        ]

    def draw_payment_id(self, data: st.DataObject) -> str:
        """Mostly a held hold (open or past its expiry), else any payment, or a missing one."""
        held = [pid for pid, e in sorted(self.payments.items()) if e.status == "held"]
        return data.draw(st.sampled_from([*held * 3, *sorted(self.payments), "pay_missing"]))

    def predict_open(self, request: PaymentRequest) -> Refusal:
        if request.currency != HOLDERS[request.payer_id] or (
            request.currency != HOLDERS[request.payee_id]
        ):
            return CurrencyNotAllowed
        if self.available(request.payer_id) < request.amount_minor:
            return InsufficientFunds
        return None

    def record_open(self, request: PaymentRequest) -> None:
        payer, payee, amount = request.payer_id, request.payee_id, request.amount_minor
        if request.type is PaymentType.PAY:
            self.balance[payer] -= amount
            self.balance[payee] += amount
            self.payments[request.payment_id] = Expected(request, "completed", amount)
        else:
            self.pending[payer] += amount
            self.payments[request.payment_id] = Expected(request, "held")

    def predict_resolution(
        self, payment_id: str, payee_id: str | None, capture_minor: int | None
    ) -> Refusal:
        expected = self.payments.get(payment_id)
        if expected is None or payee_id not in (None, expected.request.payee_id):
            return PaymentNotFound
        expires_at = expected.request.expires_at
        if expected.status == "expired" or (
            expected.status == "held" and expires_at is not None and self.now >= expires_at
        ):
            return HoldExpired
        if expected.status != "held":
            return HoldNotOpen
        if capture_minor is not None and capture_minor > expected.request.amount_minor:
            return CaptureExceedsHold
        return None

    def release(self, payment_id: str, status: str, captured_minor: int = 0) -> None:
        expected = self.payments[payment_id]
        payer, payee = expected.request.payer_id, expected.request.payee_id
        self.pending[payer] -= expected.request.amount_minor
        self.balance[payer] -= captured_minor
        self.balance[payee] += captured_minor
        expected.status, expected.captured = status, captured_minor

    def new_request(
        self, pair: tuple[str, str], amount: int, currency: str | None, ttl_s: int | None
    ) -> PaymentRequest:
        payment_id = f"pay_{next(self.ids):05d}"
        return PaymentRequest(
            PaymentType.PAY if ttl_s is None else PaymentType.HOLD,
            payment_id,
            f"o-{payment_id}",
            pair[0],
            pair[1],
            amount,
            currency or HOLDERS[pair[0]],
            None if ttl_s is None else self.now + timedelta(seconds=ttl_s),
        )
