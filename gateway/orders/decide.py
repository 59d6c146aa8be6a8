"""Orders, approvals and holds: the only place where identity, rules, consent and ledger meet.

One order flows: `gateway.mqtt.client` (paho callback → queue) → `gateway.mqtt.workers` (a worker
takes a
batch) → `check_messages` here (decode, signature, schema: no database writes) →
`decide_batch` here, in ONE database transaction for the batch: device state, idempotency,
freshness, rules, funds, consent, the money, the spend counters, the result in the outbox and
the audit entry → commit → the worker publishes the signed results.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from cryptography import x509
from joserfc.jwk import ECKey, OKPKey
from sqlalchemy import Connection

from devices import store as device_store
from devices import wire
from devices.registry import Device, Status, valid_certificates
from gateway import store
from gateway.consent import mandates as consent
from gateway.consent.periods import period_keys
from gateway.consent.rules import OrderTerms, Payee, Rules, Usage, approval_ttl_s, evaluate
from gateway.errors import Conflict, NotFound, RuleViolation
from gateway.mqtt.client import results_topic
from gateway.orders import store as order_store
from gateway.service import Context, certificate_grace
from wallet import ledger
from wallet import store as wallet_store
from wallet.errors import InsufficientFunds, WalletRefusal
from wallet.ledger import PaymentRequest, PaymentType

log = logging.getLogger("kym.payments")
TOPIC = re.compile(r"^kym/v1/devices/([A-Za-z0-9._-]{1,64})/orders$")
FRESHNESS = timedelta(seconds=300)
PAYMENT_TYPES = ("pay", "hold")


class Declined(Exception):
    """A refusal decided in this module (device state, approvals, payments not found)."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason


# --- 1. the message: decoding, signature, schema (no database writes) -----------------------


@dataclass(frozen=True)
class Checked:
    """A message after step 1: an order to decide, or a rejection to answer."""

    device_id: str
    order_id: str | None
    order: wire.Order | None = None
    payload: dict[str, Any] | None = None
    reason: str | None = None  # set when rejected


class KeyRing:
    """Parsed device keys by certificate serial: a certificate is parsed once, not per message."""

    def __init__(self) -> None:
        self._keys: dict[str, tuple[wire.PublicKey, ECKey | OKPKey]] = {}

    def key(self, serial: str, certificate_pem: str) -> tuple[wire.PublicKey, ECKey | OKPKey]:
        found = self._keys.get(serial)
        if found is None:
            public = x509.load_pem_x509_certificate(certificate_pem.encode()).public_key()
            assert isinstance(public, wire.PublicKey)
            found = self._keys[serial] = (public, wire.jose_key(public))
        return found


def check_messages(
    ctx: Context, keyring: KeyRing, messages: Iterable[tuple[str, bytes]], now: datetime
) -> list[Checked]:
    """Step 1 for a batch: decode, verify against the topic device's certificate, validate."""
    decoded = []
    for topic, raw in messages:
        match = TOPIC.match(topic)
        if match is None:
            log.warning("ignoring a message on %r", topic)
            continue
        decoded.append((match.group(1), raw))
    certificates = _certificates(ctx, {device_id for device_id, _ in decoded}, now)
    used: set[str] = set()
    checked = [_check(keyring, certificates, device_id, raw, used) for device_id, raw in decoded]
    if used:
        ctx.db.run(lambda conn: _mark_used(conn, used, now))
    return checked


def _mark_used(conn: Connection, serials: set[str], now: datetime) -> None:
    for serial in serials:  # a rotated-in certificate's first use retires the older one
        device_store.mark_certificate_used(conn, serial, now)


def _certificates(ctx: Context, device_ids: set[str], now: datetime) -> dict[str, list[Any]]:
    if not device_ids:
        return {}
    with ctx.db.read() as conn:
        rows = device_store.certificates_of(conn, device_ids)
    grace = certificate_grace(ctx)
    return {device_id: valid_certificates(certs, now, grace) for device_id, certs in rows.items()}


def _check(
    keyring: KeyRing,
    certificates: dict[str, list[Any]],
    device_id: str,
    raw: bytes,
    used: set[str],
) -> Checked:
    try:
        alg, payload = wire.decode(raw)
    except wire.InvalidMessage:
        return Checked(device_id, wire.order_id_of(wire.payload_of(raw)), reason="invalid_message")
    order_id = wire.order_id_of(payload)
    certs = certificates.get(device_id, [])
    for position, cert in enumerate(certs):
        public, jose = keyring.key(cert.serial, cert.certificate_pem)
        try:
            wire.verify(raw.decode("ascii"), alg, public, jose)
        except wire.InvalidSignature:
            continue
        if position == 0 and cert.first_used_at is None and len(certs) > 1:
            used.add(cert.serial)
        break
    else:
        return Checked(device_id, order_id, reason="invalid_signature")
    try:
        order = wire.parse_order(payload, device_id)
    except wire.InvalidMessage:
        return Checked(device_id, order_id, reason="invalid_message")
    return Checked(device_id, order.order_id, order=order, payload=payload)


# --- 2-6. deciding, in one transaction per batch -----------------------------------------------


@dataclass
class Batch:
    """What one transaction needs and produces: loaded once per batch, not per message."""

    conn: Connection
    now: datetime
    devices: dict[str, Device] = field(default_factory=dict)
    merchants: dict[str, dict[str, Any]] = field(default_factory=dict)
    timezones: dict[str, ZoneInfo] = field(default_factory=dict)
    rules: dict[str, Rules | None] = field(default_factory=dict)
    mandates: dict[str, list[consent.Mandate]] = field(default_factory=dict)
    known: dict[tuple[str, str], order_store.KnownOrder] = field(default_factory=dict)
    usage: dict[str, dict[str, Usage]] = field(default_factory=dict)  # scope -> period key -> usage
    outgoing: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    audit: list[tuple[str, str, str | None, Any]] = field(default_factory=list)
    new_orders: list[dict[str, Any]] = field(default_factory=list)
    new_scopes: list[dict[str, Any]] = field(default_factory=list)
    increments: dict[str, dict[str, Any]] = field(default_factory=dict)
    available: dict[str, int] = field(default_factory=dict)

    @property
    def ts(self) -> int:
        return int(self.now.timestamp())

    def send(self, device_id: str, payload: dict[str, Any]) -> None:
        self.outgoing.append((results_topic(device_id), payload))

    def count(self, scope: str, keys: dict[str, str], amount_minor: int) -> None:
        """Count an approved pay or hold in the scope's current periods (written at `finish`)."""
        current = self.usage.setdefault(scope, {})
        row = self.increments.setdefault(scope, {"scope": scope})
        for period, key in keys.items():
            used = current.get(key, Usage())
            current[key] = Usage(used.spent_minor + amount_minor, used.count + 1)
            row[f"{period}_key"] = key
            row[f"{period}_spent"] = row.get(f"{period}_spent", 0) + amount_minor
            row[f"{period}_count"] = row.get(f"{period}_count", 0) + 1


def decide_batch(ctx: Context, checked: list[Checked], now: datetime) -> list[tuple[int, str, str]]:
    """Steps 1 (idempotency, freshness) to 6 for a batch; returns the outbox entries to publish."""

    def work(conn: Connection) -> list[tuple[int, str, str]]:
        batch = load_batch(conn, checked, now)
        for item in checked:
            decide_one(batch, item)
        return finish(ctx, batch)

    return ctx.db.run(work)


def load_batch(conn: Connection, checked: list[Checked], now: datetime) -> Batch:
    """Lock the senders and load their state, the payees and known orders in a few queries."""
    orders = [c.order for c in checked if c.order is not None]
    senders = {o.device_id for o in orders}
    payees = {o.payee for o in orders if isinstance(o, wire.PayOrder | wire.HoldOrder)}
    batch = load_state(conn, now, senders, payees)
    batch.known = order_store.known_orders(conn, [(o.device_id, o.order_id) for o in orders])
    return batch


def load_state(conn: Connection, now: datetime, senders: set[str], payees: set[str]) -> Batch:
    """Lock the sender devices (in id order) and load what deciding for them needs."""
    batch = Batch(conn, now)
    batch.devices = device_store.lock_devices(conn, senders | payees, lock=senders)
    batch.merchants = store.merchants_by_id(conn, (payees | senders) - set(batch.devices))
    owner_ids = {d.owner_id for d in batch.devices.values() if d.id in senders}
    batch.timezones = {k: ZoneInfo(v) for k, v in store.owner_timezones(conn, owner_ids).items()}
    batch.rules = order_store.load_rules(conn, senders)
    batch.mandates = order_store.load_mandates(conn, senders)
    keys_now: dict[str, dict[str, str]] = {}
    for device_id in senders & set(batch.devices):
        keys = _keys_now(now, batch.timezones[batch.devices[device_id].owner_id])
        keys_now[device_id] = keys
        for mandate in batch.mandates.get(device_id, []):
            keys_now[mandate.id] = keys
    batch.usage = order_store.usage(conn, keys_now, keys_now)
    return batch


def decide_one(batch: Batch, item: Checked) -> None:
    """Answer one checked message within the batch."""
    if item.reason is not None:
        _reject(batch, item.device_id, item.order_id, item.reason)
        return
    assert item.order is not None and item.payload is not None
    order, digest = item.order, payload_digest(item.payload)
    known = batch.known.get((item.device_id, order.order_id))
    if known is not None and known.payload_sha256 != digest:
        _reject(batch, item.device_id, order.order_id, "idempotency_conflict")
        return
    if known is not None:  # a replay: the latest answer again, nothing decided anew
        batch.send(item.device_id, known.result | {"duplicate": True, "ts": batch.ts})
        return
    if abs(order.ts - batch.ts) > FRESHNESS.total_seconds():
        _reject(batch, item.device_id, order.order_id, "stale_order")
        return
    result = decide_order(batch, order)
    batch.new_orders.append(
        order_store.order_row(
            order.device_id, order.order_id, digest, order.type, result, batch.now
        )
    )
    batch.known[(order.device_id, order.order_id)] = order_store.KnownOrder(digest, result)
    batch.send(order.device_id, result)
    batch.audit.append(
        (
            f"device:{order.device_id}",
            f"order.{result['status']}",
            order.device_id,
            _audit_data(order, result),
        )
    )


def _reject(batch: Batch, device_id: str, order_id: str | None, reason: str) -> None:
    """A `rejected` result; recorded in the audit trail (not as an order: nothing was decided
    about money), so that every refusal can be explained later."""
    batch.send(device_id, _result(batch, device_id, order_id, "rejected", reason))
    batch.audit.append(
        (f"topic:{device_id}", "order.rejected", None, {"order_id": order_id, "reason": reason})
    )


def decide_order(
    batch: Batch, order: wire.Order, steps: Callable[[Batch, Any], dict[str, Any]] | None = None
) -> dict[str, Any]:
    """Steps 2 to 6 for one order (or the given `steps`); a refusal becomes a declined result
    and leaves nothing of the order behind."""
    if steps is None:
        is_payment = isinstance(order, wire.PayOrder | wire.HoldOrder)
        steps = _payment_steps if is_payment else _adjustment_by_sender
    savepoint = batch.conn.begin_nested()
    try:
        result = steps(batch, order)
    except (Declined, RuleViolation, WalletRefusal) as refusal:
        savepoint.rollback()
        reason = str(getattr(refusal, "reason", "declined"))
        return _result(
            batch, order.device_id, order.order_id, "declined", reason, **_money_fields(order)
        )
    savepoint.commit()
    return result


def _payment_steps(batch: Batch, order: Any) -> dict[str, Any]:
    return decide_payment(batch, order)


def _adjustment_by_sender(batch: Batch, order: Any) -> dict[str, Any]:
    return decide_adjustment(batch, order.device_id, order)


def decide_payment(batch: Batch, order: wire.PayOrder | wire.HoldOrder) -> dict[str, Any]:
    """A pay or hold: device, rules, funds, consent, then the money."""
    device = _active_sender(batch, order.device_id)
    terms, payee = _terms(batch, device, order)
    tz = batch.timezones[device.owner_id]
    rules = batch.rules.get(device.id)
    keys = _keys_now(batch.now, tz)
    evaluate(terms, payee, rules, batch.usage.get(device.id, {}), batch.now, tz)
    assert payee is not None, "evaluate refuses an unknown payee"
    _check_funds(batch, device.id, order.amount)
    choice = consent.decide_consent(
        terms, payee, rules, batch.mandates.get(device.id, []), batch.usage, batch.now, tz
    )
    if choice.needs_approval:
        return _ask_owner(batch, order, rules)
    mandate_id = choice.mandate.id if choice.mandate else None
    return move_payment(batch, order, payee, mandate_id, keys)


def move_payment(
    batch: Batch,
    order: wire.PayOrder | wire.HoldOrder,
    payee: Payee,
    mandate_id: str | None,
    keys: dict[str, str],
) -> dict[str, Any]:
    """Step 6: move (or reserve) the money, count it, and tell the payee device."""
    payment_id = f"pay_{secrets.token_hex(8)}"
    expires_at = None
    if isinstance(order, wire.HoldOrder):
        expires_at = batch.now + timedelta(seconds=order.expires_in)
    kind = PaymentType.HOLD if order.type == "hold" else PaymentType.PAY
    request = PaymentRequest(
        kind,
        payment_id,
        order.order_id,
        order.device_id,
        payee.id,
        order.amount,
        order.currency,
        expires_at,
    )
    wallet_store.place(batch.conn, request, batch.now)
    _spent(batch, order.device_id, order.amount)
    for scope in [order.device_id] + ([mandate_id] if mandate_id else []):
        batch.count(scope, keys, order.amount)
    batch.new_scopes.append(
        {
            "payment_id": payment_id,
            "payer_id": order.device_id,
            "mandate_id": mandate_id,
            "period_keys": json.dumps(keys),
        }
    )
    if payee.id in batch.devices:
        event = "hold_placed" if kind == PaymentType.HOLD else "payment_received"
        batch.send(
            payee.id,
            wire.event_payload(
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
    return _result(
        batch,
        order.device_id,
        order.order_id,
        "approved",
        None,
        payment_id=payment_id,
        amount=order.amount,
        currency=order.currency,
        **({"expires_at": int(expires_at.timestamp())} if expires_at else {}),
    )


def decide_adjustment(
    batch: Batch, sender_id: str, order: wire.CaptureOrder | wire.VoidOrder | wire.RefundOrder
) -> dict[str, Any]:
    """A capture, void or refund from the payee (a device, or a merchant over HTTP)."""
    if sender_id not in batch.merchants:
        _active_sender(batch, sender_id)
    payment = wallet_store.get_payment(batch.conn, order.payment_id)
    if payment is None or payment.payee_id != sender_id:
        raise Declined("payment_not_found")
    kwargs = {
        "payment_id": order.payment_id,
        "now": batch.now,
        "payee_id": order.payee or None,
        "currency": order.currency,
    }
    if isinstance(order, wire.CaptureOrder):
        done = wallet_store.capture(batch.conn, amount_minor=order.amount, **kwargs)  # type: ignore[arg-type]
        _give_back(batch, done.payment_id, done.captured_amount_minor - done.amount_minor, 0)
        return _adjusted(
            batch, order, done, "captured", "hold_captured", done.captured_amount_minor
        )
    if isinstance(order, wire.VoidOrder):
        done = wallet_store.void(batch.conn, **kwargs)  # type: ignore[arg-type]
        _give_back(batch, done.payment_id, -done.amount_minor, -1)
        return _adjusted(batch, order, done, "voided", "hold_voided", done.amount_minor)
    ledger.refund(ledger.find(payment, order.payee, order.currency), order.amount)  # step 4
    _check_funds(batch, sender_id, order.amount)  # step 5
    done = wallet_store.refund(batch.conn, amount_minor=order.amount, **kwargs)  # type: ignore[arg-type]
    _spent(batch, sender_id, order.amount)
    _give_back(batch, done.payment_id, -order.amount, 0)
    return _adjusted(batch, order, done, "refunded", "refund_received", order.amount)


def _adjusted(
    batch: Batch, order: Any, payment: Any, status: str, event: str, amount: int
) -> dict[str, Any]:
    batch.send(
        payment.payer_id,
        wire.event_payload(
            event,
            payment.payer_id,
            batch.ts,
            payment_id=payment.payment_id,
            amount=amount,
            currency=payment.currency,
        ),
    )
    return _result(
        batch,
        order.device_id,
        order.order_id,
        status,
        None,
        payment_id=payment.payment_id,
        amount=amount,
        currency=payment.currency,
    )


def _give_back(batch: Batch, payment_id: str, spent_delta: int, count_delta: int) -> None:
    """A capture, void, expiry or refund changes what its payment counts in its periods."""
    scope = order_store.payment_scope(batch.conn, payment_id)
    if scope is None or (spent_delta == 0 and count_delta == 0):
        return
    payer_id, mandate_id, keys = scope
    for counted in [payer_id] + ([mandate_id] if mandate_id else []):
        pending = batch.increments.get(counted)
        if pending is not None and all(pending.get(f"{p}_key") == k for p, k in keys.items()):
            for period in keys:  # counted in this very batch: not in the database yet
                pending[f"{period}_spent"] += spent_delta
                pending[f"{period}_count"] += count_delta
        else:
            order_store.adjust_payment(batch.conn, counted, keys, spent_delta, count_delta)


def _active_sender(batch: Batch, device_id: str) -> Device:
    device = batch.devices.get(device_id)
    if device is None or device.status != Status.ACTIVE:
        raise Declined("device_not_active")
    return device


def _terms(
    batch: Batch, device: Device, order: wire.PayOrder | wire.HoldOrder
) -> tuple[OrderTerms, Payee | None]:
    terms = OrderTerms(device.id, device.currency, order.payee, order.amount, order.currency)
    return terms, payee_of(batch, order.payee)


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
            device.status == Status.ACTIVE,
        )
    return None


def _keys_now(now: datetime, tz: ZoneInfo) -> dict[str, str]:
    """The period keys an order placed now counts under, e.g. {"day": "day:2026-11-27"}."""
    return {str(period): key for period, key in period_keys(now, tz).items()}


def _check_funds(batch: Batch, holder_id: str, amount_minor: int) -> None:
    """Step 4, from the wallet as this batch left it (read once per batch: the sender is
    locked, so only credits can happen meanwhile; the ledger's conditional update is the guard)."""
    if holder_id not in batch.available:
        wallet = wallet_store.get_wallet(batch.conn, holder_id)
        batch.available[holder_id] = wallet.available_minor if wallet else 0
    if batch.available[holder_id] < amount_minor:
        raise InsufficientFunds("the wallet's available amount is too low")


def _spent(batch: Batch, holder_id: str, amount_minor: int) -> None:
    if holder_id in batch.available:
        batch.available[holder_id] -= amount_minor


def _ask_owner(
    batch: Batch, order: wire.PayOrder | wire.HoldOrder, rules: Rules | None
) -> dict[str, Any]:
    """Step 5: store the order for its owner; a pending approval reserves nothing."""
    approval_id = f"apr_{secrets.token_hex(8)}"
    order_store.insert_approval(
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
        },
    )
    return _result(
        batch,
        order.device_id,
        order.order_id,
        "pending_approval",
        None,
        amount=order.amount,
        currency=order.currency,
        approval_id=approval_id,
    )


def finish(ctx: Context, batch: Batch) -> list[tuple[int, str, str]]:
    """Sign the batch's results into the outbox and chain its audit entries; same transaction."""
    signer = ctx.pki.signer.private_key
    jose = ctx.signer_jose
    signed = [(topic, wire.sign(payload, signer, jose)) for topic, payload in batch.outgoing]
    order_store.record_orders(batch.conn, batch.new_orders)
    order_store.record_payment_scopes(batch.conn, batch.new_scopes)
    order_store.add_to_counters(batch.conn, list(batch.increments.values()))
    ids = order_store.enqueue(batch.conn, signed, batch.now)
    if batch.audit:
        store.append_audit(batch.conn, batch.now, batch.audit)
    return [(i, topic, token) for i, (topic, token) in zip(ids, signed, strict=True)]


def payload_digest(payload: dict[str, Any]) -> str:
    """SHA-256 of the payload as parsed JSON (key order and spacing do not matter)."""
    return hashlib.sha256(
        json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()


def _result(
    batch: Batch,
    device_id: str,
    order_id: str | None,
    status: str,
    reason: str | None,
    **fields: Any,
) -> dict[str, Any]:
    return wire.result_payload(
        order_id=order_id, device_id=device_id, status=status, reason=reason, ts=batch.ts, **fields
    )


def _money_fields(order: wire.Order) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "amount": getattr(order, "amount", None),
        "currency": getattr(order, "currency", None),
    }
    if hasattr(order, "payment_id"):
        fields["payment_id"] = order.payment_id
    return fields


def _audit_data(order: wire.Order, result: dict[str, Any]) -> dict[str, Any]:
    return {
        "order_id": order.order_id,
        "type": order.type,
        "reason": result.get("reason"),
        "payment_id": result.get("payment_id"),
        "amount": result.get("amount"),
        "currency": result.get("currency"),
        "payee": getattr(order, "payee", None),
    }


# --- approvals, expiries and merchants (called from the API and the housekeeper) -------------


def decide_approval(
    ctx: Context, owner_id: str, approval_id: str, decision: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The owner approves or declines; approving runs steps 2-4 again at this moment."""
    now = ctx.clock()

    def work(conn: Connection) -> tuple[dict[str, Any], dict[str, Any], list[Any]]:
        row = order_store.get_approval(conn, approval_id)
        device = device_store.get_device(conn, row["device_id"]) if row else None
        if row is None or device is None or device.owner_id != owner_id:
            raise NotFound("no such approval")
        batch = load_state(conn, now, {device.id}, {row["payee"]})  # locks the device
        row = order_store.get_approval(conn, approval_id)
        if row is None or row["status"] != "pending" or row["expires_at"] <= now:
            raise Conflict("the approval is no longer pending", reason="approval_not_pending")
        order = wire.parse_order(json.loads(row["order_json"]), device.id)
        assert isinstance(order, wire.PayOrder | wire.HoldOrder)
        result = (
            decide_order(batch, order, _approved)
            if decision == "approve"
            else _result(
                batch,
                device.id,
                order.order_id,
                "declined",
                "approval_declined",
                amount=order.amount,
                currency=order.currency,
            )
        )
        closed = order_store.close_approval(
            conn, approval_id, decision + "d", result["status"], result["reason"], now
        )
        if not closed:  # expired at this very moment: roll everything back
            raise Conflict("the approval is no longer pending", reason="approval_not_pending")
        order_store.update_order_result(conn, device.id, order.order_id, result, now)
        batch.send(device.id, result)
        batch.audit.append(
            (
                f"owner:{owner_id}",
                f"approval.{decision}",
                device.id,
                {"approval_id": approval_id, **_audit_data(order, result)},
            )
        )
        approval = order_store.get_approval(conn, approval_id)
        assert approval is not None
        return approval, result, finish(ctx, batch)

    approval, result, entries = ctx.db.run(work)
    ctx.publish(entries)
    return approval, result


def _approved(batch: Batch, order: wire.PayOrder | wire.HoldOrder) -> dict[str, Any]:
    """What the owner's approval runs: steps 2-4 again at this moment, then the money."""
    device = _active_sender(batch, order.device_id)
    terms, payee = _terms(batch, device, order)
    tz = batch.timezones[device.owner_id]
    rules = batch.rules.get(device.id)
    evaluate(terms, payee, rules, batch.usage.get(device.id, {}), batch.now, tz)
    _check_funds(batch, device.id, order.amount)
    assert payee is not None, "evaluate refuses an unknown payee"
    return move_payment(batch, order, payee, None, _keys_now(batch.now, tz))


def expire_approvals(ctx: Context) -> int:
    """Decline approvals nobody decided in time (`approval_expired`); a timeout never approves."""
    now = ctx.clock()

    def work(conn: Connection) -> list[tuple[int, str, str]]:
        batch = Batch(conn, now)
        for row in order_store.due_approvals(conn, now):
            if not order_store.close_approval(
                conn, row["id"], "expired", "declined", "approval_expired", now
            ):
                continue
            result = _result(
                batch,
                row["device_id"],
                row["order_id"],
                "declined",
                "approval_expired",
                amount=row["amount_minor"],
                currency=row["currency"],
            )
            order_store.update_order_result(conn, row["device_id"], row["order_id"], result, now)
            batch.send(row["device_id"], result)
            batch.audit.append(
                (
                    "gateway",
                    "approval.expired",
                    row["device_id"],
                    {"approval_id": row["id"], "order_id": row["order_id"]},
                )
            )
        return finish(ctx, batch)

    entries = ctx.db.run(work)
    ctx.publish(entries)
    return len(entries)


def expire_holds(ctx: Context) -> int:
    """Void holds nobody captured in time, give back what they counted, tell the payer."""
    now = ctx.clock()

    def work(conn: Connection) -> list[tuple[int, str, str]]:
        batch = Batch(conn, now)
        for payment in wallet_store.expire_due_holds(conn, now):
            _give_back(batch, payment.payment_id, -payment.amount_minor, -1)
            batch.send(
                payment.payer_id,
                wire.event_payload(
                    "hold_expired",
                    payment.payer_id,
                    batch.ts,
                    payment_id=payment.payment_id,
                    amount=payment.amount_minor,
                    currency=payment.currency,
                ),
            )
            batch.audit.append(
                (
                    "gateway",
                    "hold.expired",
                    payment.payer_id,
                    {"payment_id": payment.payment_id, "amount": payment.amount_minor},
                )
            )
        return finish(ctx, batch)

    entries = ctx.db.run(work)
    ctx.publish(entries)
    return len(entries)


def merchant_adjust(
    ctx: Context,
    merchant_id: str,
    payment_id: str,
    kind: str,
    amount: int | None,
    idempotency_key: str,
) -> dict[str, Any]:
    """A merchant's capture, void or refund over HTTP: the same checks as a payee device's.

    Idempotent by (merchant, key); returns the result, whose status is declined on a refusal.
    """
    now = ctx.clock()
    body: dict[str, Any] = {
        "v": 1,
        "type": kind,
        "order_id": idempotency_key,
        "nonce": "http",
        "device_id": merchant_id,
        "payment_id": payment_id,
        "ts": int(now.timestamp()),
    }
    if amount is not None:
        body["amount"] = amount
    order = wire.parse_order(body, merchant_id)
    digest = payload_digest({k: v for k, v in body.items() if k not in ("ts",)})

    def work(conn: Connection) -> tuple[dict[str, Any], list[Any]]:
        known = order_store.known_orders(conn, [(merchant_id, idempotency_key)])
        if known:
            earlier = known[(merchant_id, idempotency_key)]
            if earlier.payload_sha256 != digest:
                raise Conflict(
                    "this idempotency key was used for another request",
                    reason="idempotency_conflict",
                )
            return earlier.result, []
        batch = load_state(conn, now, set(), {merchant_id})
        result = decide_order(batch, order)
        batch.new_orders.append(
            order_store.order_row(merchant_id, idempotency_key, digest, kind, result, now)
        )
        batch.audit.append(
            (
                f"merchant:{merchant_id}",
                f"order.{result['status']}",
                None,
                _audit_data(order, result),
            )
        )
        return result, finish(ctx, batch)

    result, entries = ctx.db.run(work)
    ctx.publish(entries)
    return result
