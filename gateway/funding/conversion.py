"""Instalment offers inside the decision (contract section 8): step 4 asks whether an offer applies
to a pay, and the money comes from the credit line when the owner takes one (in advance, up to
`auto_accept_up_to`, or by approving with `instalments`).

The arithmetic and the conditions are pure (`gateway.funding.offers`); this module reads what
they need within the decision's transaction: the owner's policy (kept by the worker's cache,
which every change to a policy invalidates, `gateway.orders.cache`), the credit line, and the
balances `keep_at_least` is compared with. Nothing is read unless the owner has a policy and the
pay is within its amounts and categories.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection

from devices import wire
from devices.registry import Device
from gateway.consent.rules import Payee
from gateway.funding import auto, offers, plans
from gateway.funding import store as funding_store
from gateway.funding.auto import FundedBy
from gateway.funding.offers import Offer, Policy, Terms
from gateway.funding.plan import CREDIT_LINE, available
from gateway.orders.batch import Batch
from gateway.orders.cache import load_policies
from wallet import store as wallet_store
from wallet.ledger import PaymentType


@dataclass(frozen=True)
class Offered:
    """An offer that applies, with the policy it was made under."""

    policy: Policy
    offer: Offer


def offer_for(
    batch: Batch, device: Device, order: wire.PayOrder | wire.HoldOrder, payee: Payee, covered: bool
) -> Offered | None:
    """Step 4: the instalment offer for this order, if one applies; `covered`: the wallet and
    automatic top-ups can cover it."""
    if not isinstance(order, wire.PayOrder):
        return None  # never a hold
    policy = _policy_of(batch, device.owner_id)
    if policy is None:
        return None
    line = funding_store.get_source(batch.conn, policy.source_id)
    if line is None or line.kind != CREDIT_LINE or line.owner_id != device.owner_id:
        return None
    if not offers.eligible(
        policy,
        is_pay=True,
        amount_minor=order.amount,
        currency=order.currency,
        category=payee.effective_category,
        line_currency=line.currency,
    ):
        return None
    if covered and not offers.keeps_too_little(
        _wallet_balance(batch, device.id),
        auto.source_balances(batch, device),
        order.amount,
        policy.keep_at_least_minor,
    ):
        return None
    offer = offers.make_offer(policy, order.amount, line.apr_bps or 0, available(line), batch.now)
    return None if offer is None else Offered(policy, offer)


def pay_from_line(
    batch: Batch, device: Device, payment_id: str, amount_minor: int, terms: Terms
) -> FundedBy:
    """Lend the payment's amount from the credit line into the wallet and open its plan (the
    payment is then placed from the wallet as any other); the result's `funded_by`. Raises
    `Conflict` (`credit_limit_exceeded`, `offer_withdrawn`) having moved nothing."""
    auto.forget_plan(batch, device.id)  # the line pays: no automatic top-up with it
    with batch.conn.begin_nested():  # a refusal takes back whatever it wrote
        plan_id = plans.open_plan(
            batch,
            device=device,
            source_id=terms.source_id,
            payment_id=payment_id,
            amount_minor=amount_minor,
            count=terms.count,
            apr_bps=terms.apr_bps,
            interval_days=terms.interval_days,
        )
    return ({"source": terms.source_id, "amount": amount_minor, "plan_id": plan_id},)


def current_policy(conn: Connection, owner_id: str) -> Policy | None:
    """The owner's policy as stored now, or None."""
    return load_policies(conn, [owner_id]).get(owner_id)


def _policy_of(batch: Batch, owner_id: str) -> Policy | None:
    """The owner's policy: from the worker's cache (synced at the batch's start) when the
    batch has one, else read once per batch for every owner of its devices."""
    if batch.cache is not None:
        others = (device.owner_id for device in batch.devices.values())
        return batch.cache.policy(batch.conn, owner_id, others)
    loaded: dict[str, Policy | None] = batch.funding.setdefault("policies", {})
    if owner_id not in loaded:
        owners = {d.owner_id for d in batch.devices.values()} | {owner_id}
        found = load_policies(batch.conn, owners - set(loaded))
        loaded.update({o: found.get(o) for o in owners - set(loaded)})
    return loaded[owner_id]


def _wallet_balance(batch: Batch, device_id: str) -> int:
    """The wallet's balance as this batch leaves it: pays the batch places at its end are not
    in the ledger yet (holds never change a balance)."""
    wallet = wallet_store.get_wallet(batch.conn, device_id)
    unplaced = sum(
        p.amount_minor
        for p in batch.placements or ()
        if p.payer_id == device_id and p.type is PaymentType.PAY
    )
    return (wallet.balance_minor if wallet else 0) - unplaced
