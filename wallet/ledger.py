"""The ledger's pure core: accounts, transfers and payments as values, and the rules moving money.

Double entry after TigerBeetle: every transfer debits one account and credits another by the same
amount, so per currency the accounts always sum to zero. An account keeps four counters; a wallet
may never let its debits (pending ones included) exceed its credits, while the contra account that
top-ups come from may. A hold is a pending transfer that a capture (up to the held amount), a void
or an expiry resolves exactly once. No SQL, no clock, no I/O: `now` is always a parameter.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from wallet.ceilings import MAX_BALANCE_MINOR as MAX_BALANCE_MINOR
from wallet.ceilings import MAX_TOTAL_MINOR as MAX_TOTAL_MINOR
from wallet.ceilings import UNBOUNDED_MINOR as UNBOUNDED_MINOR
from wallet.ceilings import most_held_before as most_held_before
from wallet.ceilings import most_totals_before as most_totals_before
from wallet.errors import (
    BalanceOverLimit,
    CaptureExceedsHold,
    CurrencyNotAllowed,
    HoldExpired,
    HoldNotOpen,
    IdempotencyConflict,
    InsufficientFunds,
    PaymentNotFound,
    RefundExceedsPayment,
    TotalsOverLimit,
    WalletNotFound,
    WalletRefusal,
)

MAX_AMOUNT_MINOR = 10**15  # far above any payment, far below BIGINT when summed
FUNDING_PREFIX = "@funding/"
FEES_PREFIX = "@fees/"
_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_CURRENCY = re.compile(r"[A-Z]{3}")


class TransferKind(StrEnum):
    TOP_UP = "top_up"
    PAY = "pay"
    HOLD = "hold"
    CAPTURE = "capture"
    VOID = "void"
    EXPIRE = "expire"
    REFUND = "refund"
    DRAW = "draw"  # an automatic top-up: a funding source into a wallet, for `payment_id`
    LEND = "lend"  # a credit line into a wallet: the amount of a plan's payment `payment_id`
    FEE = "fee"  # a credit line to the fee account: the fee of a plan's payment `payment_id`
    COLLECT = "collect"  # a balance source to a credit line: instalments, keyed per collection


POSTING_KINDS = frozenset(
    {
        TransferKind.TOP_UP,
        TransferKind.PAY,
        TransferKind.CAPTURE,
        TransferKind.REFUND,
        TransferKind.DRAW,
        TransferKind.LEND,
        TransferKind.FEE,
        TransferKind.COLLECT,
    }
)
RESOLVING_KINDS = frozenset({TransferKind.CAPTURE, TransferKind.VOID, TransferKind.EXPIRE})


class PaymentType(StrEnum):
    PAY = "pay"
    HOLD = "hold"


class PaymentStatus(StrEnum):
    COMPLETED = "completed"
    HELD = "held"
    CAPTURED = "captured"
    VOIDED = "voided"
    EXPIRED = "expired"


@dataclass(frozen=True)
class Delta:
    """How much one transfer adds to each counter of one account."""

    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0

    def __neg__(self) -> Delta:
        return Delta(
            -self.debits_posted, -self.credits_posted, -self.debits_pending, -self.credits_pending
        )

    @property
    def available_change(self) -> int:
        return self.credits_posted - self.debits_posted - self.debits_pending


@dataclass(frozen=True)
class Account:
    """A wallet or a contra account with its four counters (minor units)."""

    id: str
    currency: str
    debits_must_not_exceed_credits: bool
    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0

    @property
    def balance_minor(self) -> int:
        return self.credits_posted - self.debits_posted

    @property
    def available_minor(self) -> int:
        return self.balance_minor - self.debits_pending

    @property
    def holding_minor(self) -> int:
        """The balance plus what open holds will bring in: what a capture can take it to."""
        return self.balance_minor + self.credits_pending


@dataclass(frozen=True)
class Wallet:
    """What a holder sees of its account."""

    holder_id: str
    currency: str
    balance_minor: int
    available_minor: int


@dataclass(frozen=True)
class TopUpResult:
    """The answer to a top-up; a replay of the same request gets an equal one."""

    holder_id: str
    currency: str
    amount_minor: int
    balance_minor: int
    available_minor: int
    replayed: bool = field(default=False, compare=False)  # the first answer again: no move


@dataclass(frozen=True)
class PaymentRequest:
    """A pay (posted at once) or a hold (pending until `expires_at`), as the caller asks for it."""

    type: PaymentType
    payment_id: str
    order_id: str
    payer_id: str
    payee_id: str
    amount_minor: int
    currency: str
    expires_at: datetime | None = None


@dataclass(frozen=True)
class Payment:
    """A pay or a hold and what became of it; `captured_amount_minor` of a pay is its amount."""

    payment_id: str
    order_id: str
    payer_id: str
    payee_id: str
    type: PaymentType
    amount_minor: int
    captured_amount_minor: int
    refunded_amount_minor: int
    status: PaymentStatus
    currency: str
    created_at: datetime
    expires_at: datetime | None

    @property
    def refundable_minor(self) -> int:
        return self.captured_amount_minor - self.refunded_amount_minor


def funding_account_id(currency: str) -> str:
    """The contra account that top-ups in `currency` are debited from ('@' is not in ids)."""
    assert_currency(currency)
    return FUNDING_PREFIX + currency


def fee_account_id(currency: str) -> str:
    """The account that instalment fees in `currency` are paid into (fee income)."""
    assert_currency(currency)
    return FEES_PREFIX + currency


def assert_amount(amount_minor: int) -> None:
    """Amounts are positive ints of minor units; anything else is a bug at the edge."""
    assert type(amount_minor) is int, f"amount must be an int, got {amount_minor!r}"
    assert 0 < amount_minor <= MAX_AMOUNT_MINOR, f"amount out of range: {amount_minor}"


def assert_currency(currency: str) -> None:
    """A currency is an ISO 4217 code."""
    assert isinstance(currency, str) and _CURRENCY.fullmatch(currency), currency


def assert_id(value: str) -> None:
    """Ids come from the contract's alphabet."""
    assert isinstance(value, str) and _ID.fullmatch(value), value


def assert_time(value: datetime) -> None:
    """Times carry a timezone, so that SQLite and PostgreSQL compare them alike."""
    assert isinstance(value, datetime) and value.utcoffset() is not None, value


def transfer_deltas(
    kind: TransferKind, amount_minor: int, held_minor: int = 0
) -> tuple[Delta, Delta]:
    """What a transfer adds to its debit account and to its credit account."""
    if kind in POSTING_KINDS and kind is not TransferKind.CAPTURE:
        return Delta(debits_posted=amount_minor), Delta(credits_posted=amount_minor)
    if kind is TransferKind.HOLD:
        return Delta(debits_pending=amount_minor), Delta(credits_pending=amount_minor)
    if kind is TransferKind.CAPTURE:
        assert 0 < amount_minor <= held_minor, (amount_minor, held_minor)
        return (
            Delta(debits_posted=amount_minor, debits_pending=-held_minor),
            Delta(credits_posted=amount_minor, credits_pending=-held_minor),
        )
    assert kind in (TransferKind.VOID, TransferKind.EXPIRE) and amount_minor == held_minor
    return Delta(debits_pending=-held_minor), Delta(credits_pending=-held_minor)


def required_available(delta: Delta) -> int:
    """The available balance an account needs before `delta` so that it stays non-negative."""
    return max(0, -delta.available_change)


def apply(account: Account, delta: Delta) -> Account:
    """The account after a transfer's delta."""
    return replace(
        account,
        debits_posted=account.debits_posted + delta.debits_posted,
        credits_posted=account.credits_posted + delta.credits_posted,
        debits_pending=account.debits_pending + delta.debits_pending,
        credits_pending=account.credits_pending + delta.credits_pending,
    )


def open_payment(request: PaymentRequest, now: datetime) -> Payment:
    """The payment a pay or hold request creates once its money has moved."""
    for value in (request.payment_id, request.order_id, request.payer_id, request.payee_id):
        assert_id(value)
    assert request.payer_id != request.payee_id, "a payer cannot pay itself"
    assert_amount(request.amount_minor)
    assert_currency(request.currency)
    assert_time(now)
    is_hold = request.type is PaymentType.HOLD
    assert (request.expires_at is not None) == is_hold, "a hold, and only a hold, expires"
    if request.expires_at is not None:
        assert_time(request.expires_at)  # in the past only when it replays an earlier hold
    return Payment(
        payment_id=request.payment_id,
        order_id=request.order_id,
        payer_id=request.payer_id,
        payee_id=request.payee_id,
        type=request.type,
        amount_minor=request.amount_minor,
        captured_amount_minor=0 if is_hold else request.amount_minor,
        refunded_amount_minor=0,
        status=PaymentStatus.HELD if is_hold else PaymentStatus.COMPLETED,
        currency=request.currency,
        created_at=now,
        expires_at=request.expires_at,
    )


def replay(existing: Payment, request: PaymentRequest) -> Payment:
    """A payment id seen before: the same request gets the payment back, another one conflicts."""
    same = (
        existing.type is request.type
        and existing.order_id == request.order_id
        and existing.payer_id == request.payer_id
        and existing.payee_id == request.payee_id
        and existing.amount_minor == request.amount_minor
        and existing.currency == request.currency
        and existing.expires_at == request.expires_at
    )
    if not same:
        raise IdempotencyConflict(f"payment {existing.payment_id} exists with another request")
    return existing


def is_due(payment: Payment, now: datetime) -> bool:
    """Whether a hold has reached its expiry."""
    return payment.expires_at is not None and now >= payment.expires_at


def find(payment: Payment | None, payee_id: str | None, currency: str | None) -> Payment:
    """The payment, if it exists and matches the payee and currency the caller names."""
    if (
        payment is None
        or (payee_id is not None and payment.payee_id != payee_id)
        or (currency is not None and payment.currency != currency)
    ):
        raise PaymentNotFound()
    return payment


def _open_hold(payment: Payment, now: datetime) -> Payment:
    if payment.status is PaymentStatus.EXPIRED or (
        payment.status is PaymentStatus.HELD and is_due(payment, now)
    ):
        raise HoldExpired()
    if payment.type is not PaymentType.HOLD or payment.status is not PaymentStatus.HELD:
        raise HoldNotOpen()
    return payment


def capture(payment: Payment, amount_minor: int, now: datetime) -> Payment:
    """Post up to the held amount; the rest goes back to the payer."""
    assert_amount(amount_minor)
    hold = _open_hold(payment, now)
    if amount_minor > hold.amount_minor:
        raise CaptureExceedsHold()
    return replace(hold, status=PaymentStatus.CAPTURED, captured_amount_minor=amount_minor)


def void(payment: Payment, now: datetime) -> Payment:
    """Release the whole hold."""
    return replace(_open_hold(payment, now), status=PaymentStatus.VOIDED)


def expire(payment: Payment, now: datetime) -> Payment:
    """The gateway voids a hold that nobody captured before it expired."""
    assert payment.status is PaymentStatus.HELD and is_due(payment, now), payment
    return replace(payment, status=PaymentStatus.EXPIRED)


def refund(payment: Payment, amount_minor: int) -> Payment:
    """Send back part of what was paid or captured."""
    assert_amount(amount_minor)
    if amount_minor > payment.refundable_minor:
        raise RefundExceedsPayment()
    return replace(payment, refunded_amount_minor=payment.refunded_amount_minor + amount_minor)


def explain_refused_move(
    accounts: list[tuple[str, Account | None]], currency: str, debit_id: str, need_minor: int
) -> WalletRefusal:
    """Why a conditional move found no room: a missing wallet, a currency, a credited wallet
    that would hold more than MAX_BALANCE_MINOR, an account whose debits or credits would pass
    MAX_TOTAL_MINOR, else the funds."""
    for account_id, account in accounts:
        if account is None:
            return WalletNotFound(f"no wallet for {account_id}")
        if account.currency != currency:
            return CurrencyNotAllowed(f"{account_id} holds {account.currency}, not {currency}")
    for account_id, account in accounts:
        assert account is not None
        full = account.holding_minor > MAX_BALANCE_MINOR - need_minor
        if account_id != debit_id and account.debits_must_not_exceed_credits and full:
            return BalanceOverLimit(f"{account_id} would hold more than {MAX_BALANCE_MINOR}")
    for account_id, account in accounts:
        assert account is not None
        if account_id == debit_id:
            total, side = account.debits_posted + account.debits_pending, "debits"
        else:
            total, side = account.credits_posted + account.credits_pending, "credits"
        if total > MAX_TOTAL_MINOR - need_minor:
            return TotalsOverLimit(f"{account_id}'s {side} would pass {MAX_TOTAL_MINOR}")
    # The conditional update is what decided; a read after it may already see a later credit.
    return InsufficientFunds(f"{debit_id} has less than {need_minor} {currency} available")


def top_up_fingerprint(amount_minor: int, currency: str) -> str:
    """The hash of a top-up's canonical request, kept beside its idempotency key."""
    canonical = json.dumps(
        {"amount": amount_minor, "currency": currency}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()
