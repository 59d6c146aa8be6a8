"""`capture`, `void` and `refund` by a payment's payee: a device over MQTT, a merchant over HTTP.

The contract's steps: 2. the sender is active (a device); 3. the payment is the sender's
(`payment_not_found`); 4. its state allows the change (the ledger refuses otherwise); 5. for a
refund, the sender's funds; 6. the money moves, the payment's counters give back what it no
longer counts, and the payer device hears of it. No rules, mandates or approvals apply.
"""

from __future__ import annotations

from typing import Any

from devices import wire
from devices.contract import Event, Reason, Result, Status, event_payload
from gateway.errors import Declined
from gateway.orders.batch import Batch
from gateway.orders.payments import active_sender, check_funds, spend
from wallet import ledger
from wallet import store as wallet_store
from wallet.ledger import Payment

Adjustment = wire.CaptureOrder | wire.VoidOrder | wire.RefundOrder


def capture(batch: Batch, order: wire.CaptureOrder) -> Result:
    """Post up to the held amount and release the rest."""
    _own_payment(batch, order)
    done = wallet_store.capture(batch.conn, amount_minor=order.amount, **_target(batch, order))
    batch.give_back(done.payment_id, done.captured_amount_minor - done.amount_minor, 0)
    return _adjusted(
        batch, order, done, Status.CAPTURED, Event.HOLD_CAPTURED, done.captured_amount_minor
    )


def void(batch: Batch, order: wire.VoidOrder) -> Result:
    """Release the whole hold."""
    _own_payment(batch, order)
    done = wallet_store.void(batch.conn, **_target(batch, order))
    batch.give_back(done.payment_id, -done.amount_minor, -1)
    return _adjusted(batch, order, done, Status.VOIDED, Event.HOLD_VOIDED, done.amount_minor)


def refund(batch: Batch, order: wire.RefundOrder) -> Result:
    """Pay back part or all of a pay or a captured hold, from the sender's wallet."""
    payment = _own_payment(batch, order)
    ledger.refund(ledger.find(payment, order.payee, order.currency), order.amount)  # step 4
    check_funds(batch, order.device_id, order.amount)  # step 5
    done = wallet_store.refund(batch.conn, amount_minor=order.amount, **_target(batch, order))
    spend(batch, order.device_id, order.amount)
    batch.give_back(done.payment_id, -order.amount, 0)
    return _adjusted(batch, order, done, Status.REFUNDED, Event.REFUND_RECEIVED, order.amount)


def _own_payment(batch: Batch, order: Adjustment) -> Payment:
    """Steps 2 and 3: an active sending device (merchants are always active) and its payment."""
    if order.device_id not in batch.merchants:
        active_sender(batch, order.device_id)
    payment = wallet_store.get_payment(batch.conn, order.payment_id)
    if payment is None or payment.payee_id != order.device_id:
        raise Declined(Reason.PAYMENT_NOT_FOUND)
    return payment


def _target(batch: Batch, order: Adjustment) -> dict[str, Any]:
    return {
        "payment_id": order.payment_id,
        "now": batch.now,
        "payee_id": order.payee or None,
        "currency": order.currency,
    }


def _adjusted(
    batch: Batch, order: Adjustment, payment: Payment, status: Status, event: Event, amount: int
) -> Result:
    batch.send(
        payment.payer_id,
        event_payload(
            event,
            payment.payer_id,
            batch.ts,
            payment_id=payment.payment_id,
            amount=amount,
            currency=payment.currency,
        ),
    )
    return batch.result(
        order.device_id,
        order.order_id,
        status,
        payment_id=payment.payment_id,
        amount=amount,
        currency=payment.currency,
    )
