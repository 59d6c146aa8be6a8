"""The ledger in SQL, in one namespace: what the gateway calls to move and read money.

Every function takes the caller's `Connection` and never commits: the gateway commits the money,
its spend counters and the order's result in one transaction, or a batch of orders at once
(`place_payments`). A refusal undoes whatever the call wrote before raising, so it leaves the
transaction as it found it and the caller may commit its result.

The work is done in the modules named below; this one only gathers their public functions:
`schema` (the tables), `accounts` (wallets and the conditional move of money between two
accounts), `top_ups`, `payments` (pay and hold), `adjustments` (capture, void, expiry, refund)
and `journal` (the append-only transfer log).
"""

from wallet.accounts import get_wallet, get_wallets, get_wallets_later, open_wallet
from wallet.adjustments import any_due_holds, capture, expire_due_holds, refund, void
from wallet.payments import get_payment, hold, list_payments, pay, place, place_payments
from wallet.top_ups import replayed_top_up, top_up

__all__ = [
    "any_due_holds",
    "capture",
    "expire_due_holds",
    "get_payment",
    "get_wallet",
    "get_wallets",
    "get_wallets_later",
    "hold",
    "list_payments",
    "open_wallet",
    "pay",
    "place",
    "place_payments",
    "refund",
    "replayed_top_up",
    "top_up",
    "void",
]
