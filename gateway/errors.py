"""Refusals of the gateway, each with the contract's code, and the one table that maps them.

    KymError                      reason: a snake_case code from the contract
    ├── Unauthorized              401 unauthorized: missing or unknown API key
    ├── Forbidden                 403 forbidden: this kind of party may never make the call
    ├── NotFound                  404 not_found: absent, or another party's (never say which)
    ├── Invalid                   422 with a specific code (e.g. invalid_timezone, unknown_payee)
    ├── Conflict                  409 with a specific code (e.g. invalid_state, device_exists)
    ├── Declined                  an order refused by its device's state or its payment's
    │                             (device_not_active, payment_not_found, owner_frozen, ...)
    └── RuleViolation             step 3: the owner's rules decline the order (tree below)

`REFUSALS` maps every refusal the gateway expects, its own and those of `devices` and `wallet`,
to an HTTP status and error code. An order's `declined` result carries the same code as its
`reason` (`reason_of`), and the HTTP error handler answers with both (`refusal_of`).
"""

from __future__ import annotations

from devices import errors as device_errors
from devices.contract import Reason
from devices.registry import InvalidTransition
from wallet import errors as wallet_errors


class KymError(Exception):
    """A refusal the caller can act on."""

    reason = "error"

    def __init__(self, message: str = "", *, reason: str | None = None) -> None:
        super().__init__(message or self.__class__.__doc__ or self.reason)
        if reason is not None:
            self.reason = reason


class Unauthorized(KymError):
    """Missing or unknown API key: send `Authorization: Bearer <api_key>`."""

    reason = "unauthorized"


class Forbidden(KymError):
    """This kind of party may not make this call."""

    reason = "forbidden"


class NotFound(KymError):
    """No such resource."""

    reason = "not_found"


class Invalid(KymError):
    """The request is not valid."""

    reason = "invalid_request"


class Conflict(KymError):
    """The request conflicts with the current state."""

    reason = "conflict"


class Declined(KymError):
    """The order is declined for a reason other than the owner's rules or the ledger's."""

    def __init__(self, reason: Reason, message: str = "") -> None:
        super().__init__(message or reason.value, reason=reason.value)


# Step 3 of the decision for a pay or hold (gateway.consent.rules.evaluate): the owner's rules
# decline the order, and `reason` is the code the device gets in its `declined` result.
#
#     KymError
#     └── RuleViolation
#         ├── UnknownPayee            unknown_payee
#         ├── PayeeNotAllowed         payee_not_allowed (also: the payee is the payer)
#         ├── CurrencyNotAllowed      currency_not_allowed
#         ├── CategoryNotAllowed      category_not_allowed
#         ├── OutsideActiveHours      outside_active_hours
#         ├── AmountOverLimit         amount_over_limit
#         ├── PeriodLimitExceeded     period_limit_exceeded
#         └── PaymentCountExceeded    payment_count_exceeded


class RuleViolation(KymError):
    """The owner's rules decline the order."""

    reason = "rule_violation"


class UnknownPayee(RuleViolation):
    """The payee does not exist, or is a device that is not active."""

    reason = "unknown_payee"


class PayeeNotAllowed(RuleViolation):
    """The rules do not allow this payee, or the payee is the payer itself."""

    reason = "payee_not_allowed"


class CurrencyNotAllowed(RuleViolation):
    """The order's currency differs from a wallet's or from the rules' currency."""

    reason = "currency_not_allowed"


class CategoryNotAllowed(RuleViolation):
    """The rules do not allow what the payee sells."""

    reason = "category_not_allowed"


class OutsideActiveHours(RuleViolation):
    """The order arrived outside the rules' active hours."""

    reason = "outside_active_hours"


class AmountOverLimit(RuleViolation):
    """The amount is over the rules' `max_amount`."""

    reason = "amount_over_limit"


class PeriodLimitExceeded(RuleViolation):
    """The amount would take a period's spending over one of the rules' `limits`."""

    reason = "period_limit_exceeded"


class PaymentCountExceeded(RuleViolation):
    """One more payment would exceed one of the rules' `max_payments`."""

    reason = "payment_count_exceeded"


RULE_VIOLATIONS: tuple[type[RuleViolation], ...] = (
    UnknownPayee,
    PayeeNotAllowed,
    CurrencyNotAllowed,
    CategoryNotAllowed,
    OutsideActiveHours,
    AmountOverLimit,
    PeriodLimitExceeded,
    PaymentCountExceeded,
)


# Refusal -> (HTTP status, error code; None: the exception's own `reason`). First match wins.
REFUSALS: tuple[tuple[type[Exception], int, str | None], ...] = (
    (Unauthorized, 401, None),
    (Forbidden, 403, None),
    (NotFound, 404, None),
    (Invalid, 422, None),
    (Conflict, 409, None),
    (Declined, 409, None),
    (RuleViolation, 409, None),
    (InvalidTransition, 409, "invalid_state"),
    (device_errors.CsrInvalid, 422, "csr_invalid"),
    (device_errors.AttestationInvalid, 422, "attestation_invalid"),
    (device_errors.AttestationCaInvalid, 422, "attestation_ca_invalid"),
    (device_errors.KeyInUse, 409, "device_exists"),  # a key is one device: that device exists
    (wallet_errors.WalletNotFound, 404, "not_found"),
    (wallet_errors.CurrencyNotAllowed, 422, None),
    (wallet_errors.WalletRefusal, 409, None),
)
REFUSAL_TYPES: tuple[type[Exception], ...] = tuple(kind for kind, _, _ in REFUSALS)
ORDER_REFUSALS = (Declined, RuleViolation, wallet_errors.WalletRefusal)  # an order's `declined`


def refusal_of(exc: Exception) -> tuple[int, str]:
    """The HTTP status and error code of an expected refusal."""
    for kind, status, code in REFUSALS:
        if isinstance(exc, kind):
            return status, code or str(getattr(exc, "reason", "error"))
    raise AssertionError(f"not a refusal: {exc!r}")


def reason_of(exc: Exception) -> Reason:
    """The `reason` of an order's declined result: the refusal's code, a contract code."""
    return Reason(refusal_of(exc)[1])
