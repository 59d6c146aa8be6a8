"""A `pay` or `hold`: steps 2 to 6 of the contract's decision, and the money.

2. the sender is active; 3. the owner's rules (`gateway.consent.rules.evaluate`); 4. the
funds, with automatic top-ups, or else an instalment offer (`gateway.funding.conversion`);
5. the consent (`gateway.consent.mandates.decide_consent`), which may store an approval and
answer `pending_approval`; an offer always waits for its owner, unless they agreed to it in
advance; 6. the money moves (or is reserved) and is counted. A refusal is raised (see
`gateway.errors`) and becomes a `declined` result in `gateway.orders.decide`.
"""

from __future__ import annotations

import json
from datetime import timedelta

from devices import wire
from devices.contract import Event, Reason, Result, Status, event_payload
from devices.registry import Device
from devices.registry import Status as DeviceStatus
from gateway.consent import store as consent_store
from gateway.consent.mandates import decide_consent
from gateway.consent.rules import (
    OrderTerms,
    Payee,
    Rules,
    approval_ttl_s,
    consent_rules,
    evaluate,
)
from gateway.errors import Conflict, Declined
from gateway.evidence.record import gateway_consent, instalments_agreed
from gateway.funding import auto as auto_top_up
from gateway.funding import conversion, offers
from gateway.funding.offers import Offer, Terms
from gateway.ids import ordered_hex, random_hex
from gateway.orders.batch import Batch, period_keys_now, scope_row
from wallet import store as wallet_store
from wallet.errors import InsufficientFunds, WalletRefusal
from wallet.ledger import PaymentRequest, PaymentType

Payment = wire.PayOrder | wire.HoldOrder


def decide_payment(
    batch: Batch, order: Payment, *, owner_approved: bool = False, terms: Terms | None = None
) -> Result:
    """Steps 2 to 6; when the owner has approved the order, step 5 is theirs and is skipped,
    and step 4 makes no offer. `terms`: the owner approved it by instalments (section 8), so
    after steps 2 and 3 the credit line pays on those terms (`Conflict` when it cannot)."""
    device = active_sender(batch, order.device_id)
    if device.owner_id in batch.frozen:
        raise Declined(Reason.OWNER_FROZEN)  # section 7: right after the device, step 2
    terms_of_order = OrderTerms(
        device.id, device.currency, order.payee, order.amount, order.currency
    )
    payee = payee_of(batch, order.payee)
    tz = batch.timezones[device.owner_id]
    rules = batch.rules.get(device.id)
    evaluate(terms_of_order, payee, rules, batch.usage.get(device.id, {}), batch.now, tz)
    assert payee is not None, "evaluate refuses an unknown payee"
    keys = period_keys_now(batch.now, tz)
    if terms is not None:
        return move_payment(batch, order, payee, None, keys, terms)
    if owner_approved:
        auto_top_up.check_funds(batch, device, rules, order.amount)  # step 4, without offers
        return move_payment(batch, order, payee, None, keys)
    covered = auto_top_up.covers(batch, device, rules, order.amount)  # step 4 (section 8)
    offered = conversion.offer_for(batch, device, order, payee, covered)
    if offered is None and not covered:
        raise InsufficientFunds("the wallet and the owner's sources cannot cover the amount")
    mandates = batch.mandates.get(device.id, [])
    choice = decide_consent(terms_of_order, payee, rules, mandates, batch.usage, batch.now, tz)
    mandate_id = choice.mandate.id if choice.mandate else None
    if offered is not None:
        agreed = offers.accepted_in_advance(
            offered.policy, offered.offer, order.amount, step5_asks=choice.needs_approval
        )
        if agreed is not None:
            paid = pay_agreed(batch, order, payee, mandate_id, keys, agreed)
            if paid is not None:
                instalments_agreed(batch, paid, rules, mandate_id)  # evidence: agreed in advance
                return paid
        return ask_owner(batch, order, rules, offered.offer)
    if choice.needs_approval:
        return ask_owner(batch, order, rules)
    result = move_payment(batch, order, payee, mandate_id, keys)
    gateway_consent(batch, result, rules, mandate_id)  # evidence: why it needed no approval
    return result


def pay_agreed(
    batch: Batch,
    order: Payment,
    payee: Payee,
    mandate_id: str | None,
    keys: dict[str, str],
    terms: Terms,
) -> Result | None:
    """A conversion the owner agreed to in advance; None when the line can no longer pay it
    (another transaction drew on it meanwhile): then it is offered."""
    try:
        return move_payment(batch, order, payee, mandate_id, keys, terms)
    except Conflict:
        return None


def move_payment(
    batch: Batch,
    order: Payment,
    payee: Payee,
    mandate_id: str | None,
    keys: dict[str, str],
    terms: Terms | None = None,
) -> Result:
    """Step 6: move (or reserve) the money, count it, and tell the payee device; with `terms`
    the credit line lends the amount into the wallet first (a plan), else automatic top-ups."""
    payment_id = f"pay_{ordered_hex(8)}"
    is_hold = isinstance(order, wire.HoldOrder)
    expires_at = None
    if isinstance(order, wire.HoldOrder):
        expires_at = batch.now + timedelta(seconds=order.expires_in)
    request = PaymentRequest(
        PaymentType.HOLD if is_hold else PaymentType.PAY,
        payment_id,
        order.order_id,
        order.device_id,
        payee.id,
        order.amount,
        order.currency,
        expires_at,
    )
    funded_by = fund_and_place(batch, batch.devices[order.device_id], request, terms)
    spend(batch, order.device_id, order.amount)
    for scope in [order.device_id] + ([mandate_id] if mandate_id else []):
        batch.count(scope, keys, order.amount)
    batch.new_scopes.append(scope_row(payment_id, order.device_id, mandate_id, keys))
    if payee.id in batch.devices:
        event = Event.HOLD_PLACED if is_hold else Event.PAYMENT_RECEIVED
        batch.send(
            payee.id,
            event_payload(
                event,
                payee.id,
                batch.ts,
                order_id=order.order_id,
                payment_id=payment_id,
                payer_device_id=order.device_id,
                amount=order.amount,
                currency=order.currency,
            ),
        )
    return batch.result(
        order.device_id,
        order.order_id,
        Status.APPROVED,
        payment_id=payment_id,
        amount=order.amount,
        currency=order.currency,
        expires_at=int(expires_at.timestamp()) if expires_at else None,
        funded_by=funded_by,
    )


def fund_and_place(
    batch: Batch, device: Device, request: PaymentRequest, terms: Terms | None
) -> auto_top_up.FundedBy:
    """Move the funding (the planned automatic top-ups, or with `terms` the credit line's
    loan), then place the payment: now, or at `finish` when the batch places them together
    (a refusal there decides the whole batch again, one by one). Placed now after funding that
    moved money, both are one savepoint: a wallet that refuses the payment takes the draws or
    the loan back with it, and what the batch noted of them."""
    if batch.placements is not None:
        funded_by = _fund(batch, device, request, terms)
        batch.placements.append(request)  # funds checked above; placed at `finish`
        return _credited(batch, device.id, funded_by)
    if terms is None and not auto_top_up.has_plan(batch, device.id):
        wallet_store.place(batch.conn, request, batch.now)  # nothing moves before it
        return ()
    noted = (
        len(batch.audit),
        len(batch.events),
        len(batch.outgoing),
        dict(batch.available),
        dict(batch.funding.get("drawn", {})),
    )
    try:
        with batch.conn.begin_nested():
            funded_by = _fund(batch, device, request, terms)
            wallet_store.place(batch.conn, request, batch.now)
    except WalletRefusal:
        audit, events, outgoing, available, drawn = noted
        del batch.audit[audit:], batch.events[events:], batch.outgoing[outgoing:]
        batch.available, batch.funding["drawn"] = available, drawn
        raise
    return _credited(batch, device.id, funded_by)


def _credited(
    batch: Batch, wallet_id: str, funded_by: auto_top_up.FundedBy
) -> auto_top_up.FundedBy:
    """Note what the funding moved into the wallet in this batch (by wallet id, in
    `batch.funding["credited"]`): a low balance is judged on the balance before the batch,
    which the payment alone does not give back."""
    if funded_by:
        credited = batch.funding.setdefault("credited", {})
        credited[wallet_id] = credited.get(wallet_id, 0) + sum(f["amount"] for f in funded_by)
    return funded_by


def _fund(
    batch: Batch, device: Device, request: PaymentRequest, terms: Terms | None
) -> auto_top_up.FundedBy:
    if terms is None:
        return auto_top_up.top_up(batch, device, request.payment_id)
    payment_id, amount = request.payment_id, request.amount_minor
    return conversion.pay_from_line(batch, device, payment_id, amount, terms)


def ask_owner(
    batch: Batch, order: Payment, rules: Rules | None, offer: Offer | None = None
) -> Result:
    """Step 5: store the order for its owner; a pending approval reserves nothing. With an
    instalment offer, the offer is why it waits, whatever else would have asked."""
    auto_top_up.forget_plan(batch, order.device_id)
    approval_id = f"apr_{random_hex(8)}"
    why = "no_rules" if consent_rules(rules) is None else "approval_above"
    consent_store.insert_approval(
        batch.conn,
        {
            "id": approval_id,
            "device_id": order.device_id,
            "order_id": order.order_id,
            "order_json": order.model_dump_json(),
            "payee": order.payee,
            "amount_minor": order.amount,
            "currency": order.currency,
            "created_at": batch.now,
            "expires_at": batch.now + timedelta(seconds=approval_ttl_s(rules)),
            "why": why if offer is None else "instalment_offer",
            "offer_json": None if offer is None else json.dumps(offers.offer_to_json(offer)),
        },
    )
    return batch.result(
        order.device_id,
        order.order_id,
        Status.PENDING_APPROVAL,
        amount=order.amount,
        currency=order.currency,
        approval_id=approval_id,
    )


def active_sender(batch: Batch, device_id: str) -> Device:
    """Step 2: the sending device, which must be active."""
    device = batch.devices.get(device_id)
    if device is None or device.status != DeviceStatus.ACTIVE:
        raise Declined(Reason.DEVICE_NOT_ACTIVE)
    return device


def payee_of(batch: Batch, payee_id: str) -> Payee | None:
    """The payee as the rules see it: a merchant, or a device (active or not), or None."""
    merchant = batch.merchants.get(payee_id)
    if merchant is not None:
        return Payee(payee_id, merchant["currency"], merchant["category"], True)
    device = batch.devices.get(payee_id)
    if device is not None:
        return Payee(
            device.id,
            device.currency,
            device.category,  # type: ignore[arg-type]
            device.status == DeviceStatus.ACTIVE,
        )
    return None


def check_funds(batch: Batch, holder_id: str, amount_minor: int) -> None:
    """Step 4, from the wallet as this batch left it (read once per batch: the sender is
    locked, so only credits can happen meanwhile; the ledger's conditional update is the guard)."""
    if holder_id not in batch.available:
        wallet = wallet_store.get_wallet(batch.conn, holder_id)
        batch.available[holder_id] = wallet.available_minor if wallet else 0
    if batch.available[holder_id] < amount_minor:
        raise InsufficientFunds("the wallet's available amount is too low")


def spend(batch: Batch, holder_id: str, amount_minor: int) -> None:
    """Take what just moved off the batch's view of the wallet's available amount."""
    if holder_id in batch.available:
        batch.available[holder_id] -= amount_minor
