"""Refusals of the ledger, each with the contract's reason code.

    WalletError                   base of everything the wallet package raises on purpose
    └── WalletRefusal             reason: a snake_case code; nothing was moved or recorded
        ├── InsufficientFunds     insufficient_funds: available < amount
        ├── CurrencyNotAllowed    currency_not_allowed: not the wallet's currency
        ├── IdempotencyConflict   idempotency_conflict: a known key or payment id, another body
        ├── WalletNotFound        wallet_not_found: no wallet for that holder (see below)
        ├── PaymentNotFound       payment_not_found: no such payment (or not the caller's)
        ├── HoldNotOpen           hold_not_open: captured or voided already, or a pay
        ├── HoldExpired           hold_expired: past its expires_at
        ├── CaptureExceedsHold    capture_exceeds_hold: more than the held amount
        ├── RefundExceedsPayment  refund_exceeds_payment: more than paid or captured less refunds
        └── BalanceOverLimit      amount_over_limit: the credited account would hold more than
            │                     2**53 - 1 (balance plus incoming holds)
            └── TotalsOverLimit   amount_over_limit: an account's debits or credits ever
                                  (posted plus pending) would pass 2**63 - 1, BIGINT's largest

A refusal is an expected outcome, not a failure: the store raises it only after undoing whatever
it wrote in the caller's transaction, so the caller may commit the refusal's result beside it.
`WalletNotFound` is not a contract code: the gateway opens a wallet for every device and merchant
and checks the payee before money moves (`unknown_payee`), so reaching it means a wallet was
never opened; the gateway maps it where it has the context (404 for a top-up).
"""

from __future__ import annotations


class WalletError(Exception):
    """Something the wallet package raises on purpose."""


class WalletRefusal(WalletError):
    """The ledger refuses the request; nothing changed."""

    reason = "refused"

    def __init__(self, message: str = "") -> None:
        super().__init__(message or self.__class__.__doc__ or self.reason)


class InsufficientFunds(WalletRefusal):
    """The wallet's available balance is less than the amount."""

    reason = "insufficient_funds"


class CurrencyNotAllowed(WalletRefusal):
    """The currency is not the wallet's."""

    reason = "currency_not_allowed"


class IdempotencyConflict(WalletRefusal):
    """The idempotency key or payment id was used before with another request."""

    reason = "idempotency_conflict"


class WalletNotFound(WalletRefusal):
    """No wallet is open for this holder."""

    reason = "wallet_not_found"


class PaymentNotFound(WalletRefusal):
    """No such payment for this payee."""

    reason = "payment_not_found"


class HoldNotOpen(WalletRefusal):
    """The hold was captured or voided already, or the payment is not a hold."""

    reason = "hold_not_open"


class HoldExpired(WalletRefusal):
    """The hold has expired."""

    reason = "hold_expired"


class CaptureExceedsHold(WalletRefusal):
    """The capture is larger than the held amount."""

    reason = "capture_exceeds_hold"


class RefundExceedsPayment(WalletRefusal):
    """The refund is larger than what was paid or captured, less earlier refunds."""

    reason = "refund_exceeds_payment"


class BalanceOverLimit(WalletRefusal):
    """The credited account would hold more than the largest balance (2**53 - 1 minor units)."""

    reason = "amount_over_limit"


class TotalsOverLimit(BalanceOverLimit):
    """An account's debits or credits ever (posted plus pending) would pass 2**63 - 1, the
    largest total the ledger keeps (BIGINT's largest): that side of it takes no more."""
