"""The evidence bundle about one payment (`GET /v1/payments/{id}/evidence`, contract section 9).

Who may have one: the owner of the paying device, the merchant paid, the owner of the payee
device, or the admin; anyone else is told there is no such payment. The rules' salt is shown
only to the payer's owner and the admin.

The consent JWS is signed here, over the payload recorded when the payment was decided (kept in
its `payment_scopes` row and in the decision's audit entry, which the log's signed tree heads
fix; see `gateway.evidence.record`), so its `decided_at` is the decision's time, not this one.
"""

from __future__ import annotations

import json
from typing import Any

import sqlalchemy as sa
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from sqlalchemy import Connection

from devices import store as device_store
from devices import wire
from devices.contract import results_topic
from devices.registry import Device, DeviceCertificate, valid_at
from gateway.audit import service as audit_service
from gateway.audit import store as audit_store
from gateway.audit.entries import AuditEntry
from gateway.context import Context
from gateway.errors import NotFound
from gateway.evidence import consent
from gateway.orders.store import orders, outbox, payment_scopes
from gateway.parties import Party
from wallet import store as wallet_store
from wallet.ledger import Payment

_PEM = serialization.Encoding.PEM


def evidence_bundle(ctx: Context, caller: Party, payment_id: str) -> dict[str, Any]:
    """Every part of the bundle, or NotFound when the caller may not see the payment."""
    with ctx.db.read() as conn:
        payment = wallet_store.get_payment(conn, payment_id)
        payer = device_store.get_device(conn, payment.payer_id) if payment else None
        if payment is None or payer is None:
            raise NotFound("no such payment")
        payee_device = device_store.get_device(conn, payment.payee_id)
        sees_salt = may_see(caller, payment, payer, payee_device)
        order = order_part(conn, payer.id, payment.order_id)
        scope = conn.execute(
            sa.select(payment_scopes.c.consent_json, payment_scopes.c.rules_salt).where(
                payment_scopes.c.payment_id == payment_id
            )
        ).first()
        results = results_about(conn, payment, payee_device is not None)
        entries = entries_about(conn, payment, payee_device is not None)
    size = max((e.index for e in entries), default=-1) + 1
    since = audit_service.signer_since(ctx)
    head, head_token = audit_service.tree_head_covering(ctx, size, since)
    with ctx.db.read() as conn:
        proofs = audit_service.inclusion_proofs(conn, [e.index for e in entries], head.tree_size)
    pki = ctx.pki
    return {
        "payment_id": payment_id,
        "order": {
            **order,
            "chain": _pem(pki.device_issuing.certificate, pki.device_root.certificate),
        },
        "gateway": {
            "certificate": _pem(pki.signer.certificate),
            "chain": _pem(pki.service_root.certificate),
        },
        "consent": consent_part(ctx, scope, sees_salt),
        "results": results,
        "audit": {
            "entries": [{"index": e.index, "content": e.content()} for e in entries],
            "proofs": proofs,
            "tree_head": head_token,
        },
    }


def may_see(caller: Party, payment: Payment, payer: Device, payee: Device | None) -> bool:
    """Whether the caller may have the payment's bundle (else NotFound), and whether they may
    see the rules' salt (the payer's owner and the admin)."""
    if caller.kind == "admin" or (caller.kind == "owner" and payer.owner_id == caller.id):
        return True
    if caller.kind == "merchant" and payment.payee_id == caller.id:
        return False
    if caller.kind == "owner" and payee is not None and payee.owner_id == caller.id:
        return False
    raise NotFound("no such payment")


def order_part(conn: Connection, device_id: str, order_id: str | None) -> dict[str, Any]:
    """The order as received and the device certificate whose key verifies it."""
    token = None
    if order_id is not None:
        token = conn.execute(
            sa.select(orders.c.jws).where(
                orders.c.device_id == device_id, orders.c.order_id == order_id
            )
        ).scalar()
    certificate = None
    if token is not None:
        signers = [
            c for c in device_store.list_certificates(conn, device_id) if _verifies(token, c)
        ]
        certificate = _signer_at(signers, wire.decode(token)[1].get("ts"))
    return {"jws": token, "certificate": certificate}


def _signer_at(signers: list[DeviceCertificate], ts: Any) -> str | None:
    """Of the certificates (oldest first) whose key verifies the order, the latest issued that
    was valid at its `ts`, where the verifier checks the chain: a renewal with the same key
    leaves several that verify. Failing that (an order accepted before the gateway checked its
    `ts`), the first that verifies, as bundles always named."""
    if isinstance(ts, int) and not isinstance(ts, bool):
        covering = [c for c in signers if valid_at(c, ts)]
        if covering:
            return covering[-1].certificate_pem
    return signers[0].certificate_pem if signers else None


def consent_part(ctx: Context, scope: Any, sees_salt: bool) -> dict[str, Any] | None:
    """The recorded consent, signed now (`typ` kym-consent); the salt for those who may see it."""
    if scope is None or scope.consent_json is None:
        return None
    body = json.loads(scope.consent_json)
    part: dict[str, Any] = {
        "basis": body["basis"],
        "jws": consent.sign(body, ctx.pki.signer.private_key, ctx.signer_jose),
    }
    if sees_salt and scope.rules_salt is not None:
        part["rules_salt"] = scope.rules_salt
    return part


def results_about(conn: Connection, payment: Payment, payee_is_device: bool) -> list[str]:
    """Every signed result and event sent to the payer or payee device that names the payment,
    or the payer's order when it names no payment, as published."""
    subjects = [payment.payment_id]
    if payment.order_id is not None:
        subjects.append(f"{payment.payer_id}/{payment.order_id}")
    topics = [results_topic(payment.payer_id)]
    if payee_is_device:
        topics.append(results_topic(payment.payee_id))
    query = (
        sa.select(outbox.c.jws)
        .where(outbox.c.subject.in_(subjects), outbox.c.topic.in_(topics))
        .order_by(outbox.c.id)
    )
    return [str(token) for (token,) in conn.execute(query)]


def entries_about(conn: Connection, payment: Payment, payee_is_device: bool) -> list[AuditEntry]:
    """Audit entries for the payer or payee that name the payment, and the payer's entries that
    name its order (its `pending_approval` included); never a stranger's refused order."""
    parties = {payment.payer_id} | ({payment.payee_id} if payee_is_device else set())
    actors = {"gateway", f"merchant:{payment.payee_id}"}
    found = {
        e.index: e
        for e in audit_store.iter_entries(conn, payment_id=payment.payment_id)
        if e.device_id in parties or (e.device_id is None and e.actor in actors)
    }
    if payment.order_id is not None:
        for e in audit_store.iter_entries(
            conn, device_id=payment.payer_id, order_id=payment.order_id
        ):
            found.setdefault(e.index, e)
    return [found[i] for i in sorted(found)]


def _verifies(token: str, certificate: DeviceCertificate) -> bool:
    key = x509.load_pem_x509_certificate(certificate.certificate_pem.encode()).public_key()
    try:
        alg, _payload = wire.decode(token)
        assert isinstance(key, wire.PublicKey)
        wire.verify(token, alg, key)
    except (wire.InvalidMessage, wire.InvalidSignature):
        return False
    return True


def _pem(*certificates: x509.Certificate) -> str:
    return "".join(c.public_bytes(_PEM).decode() for c in certificates)
