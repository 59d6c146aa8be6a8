"""What a decision records for evidence, in the decision's own batch (no extra statement).

The consent is recorded when the payment is decided, as the JCS payload the bundle's
`kym-consent` JWS will carry, in the payment's `payment_scopes` row (written once, never
updated) and in the decision's audit entry (`data.consent`), so that the log's signed tree
heads fix it; the JWS itself is signed when a bundle is asked for (see `gateway.evidence.bundle`),
which keeps a signature off every payment's path. Each outbox row is marked with what it is
about (`subject`), so that a bundle finds every result and event it must hold.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from devices.contract import Result
from gateway.audit.entries import canonical
from gateway.consent.rules import Rules, rules_to_json
from gateway.evidence import consent
from gateway.ids import random_hex

if TYPE_CHECKING:
    from gateway.orders.batch import Batch

DECISIONS = frozenset({"order.approved", "approval.approve"})  # the actions that decide a payment


def gateway_consent(
    batch: Batch, result: Result, rules: Rules | None, mandate_id: str | None
) -> None:
    """The gateway let a payment through: under a mandate, or within the owner's rules."""
    if result.payment_id is None or result.order_id is None:
        return
    body, salt = _gateway_body(batch, result.payment_id, result.order_id, rules, mandate_id)
    _keep(batch, result.payment_id, body, salt)


def instalments_agreed(
    batch: Batch, result: Result, rules: Rules | None, mandate_id: str | None
) -> None:
    """The gateway converted a pay to instalments the owner agreed to in advance (section 8,
    `auto_accept_up_to`): basis `instalments`, naming the plan and, as for any payment the
    gateway let through, the mandate or the rules under which no approval was needed."""
    if result.payment_id is None or result.order_id is None:
        return
    [plan_id] = [f["plan_id"] for f in result.funded_by if "plan_id" in f]
    body, salt = _gateway_body(batch, result.payment_id, result.order_id, rules, mandate_id)
    body = {**body, "basis": "instalments", "plan_id": plan_id}
    _keep(batch, result.payment_id, body, salt)


def _gateway_body(
    batch: Batch, payment_id: str, order_id: str, rules: Rules | None, mandate_id: str | None
) -> tuple[dict[str, Any], str | None]:
    if mandate_id is not None:
        body = consent.payload(payment_id, order_id, "mandate", mandate_id, "gateway", batch.ts)
        return body, None
    salt = random_hex(32)
    digest = consent.rules_sha256_of_jcs(_rules_jcs(rules), salt)
    return consent.payload(payment_id, order_id, "rules", digest, "gateway", batch.ts), salt


# The JCS of the rules objects a batch decides with, computed once per object, not per payment
# (a batch loads each device's rules once). Holding the object keeps its id from being reused.
_RULES_JCS: dict[int, tuple[Rules | None, bytes]] = {}


def _rules_jcs(rules: Rules | None) -> bytes:
    cached = _RULES_JCS.get(id(rules))
    if cached is not None and cached[0] is rules:
        return cached[1]
    if len(_RULES_JCS) >= 1024:
        _RULES_JCS.clear()
    text = canonical(rules_to_json(rules))
    _RULES_JCS[id(rules)] = (rules, text)
    return text


def owner_consent(batch: Batch, result: Result, approval_id: str, owner_id: str) -> None:
    """The owner approved a payment that waited for them."""
    if result.payment_id is None or result.order_id is None:
        return
    body = consent.payload(
        result.payment_id, result.order_id, "approval", approval_id, owner_id, batch.ts
    )
    _keep(batch, result.payment_id, body, None)


def instalments_consent(
    batch: Batch, result: Result, approval_id: str, owner_id: str, plan_id: str
) -> None:
    """The owner approved a payment by instalments (section 8): the basis names the plan."""
    if result.payment_id is None or result.order_id is None:
        return
    body = consent.payload(
        result.payment_id, result.order_id, "instalments", approval_id, owner_id, batch.ts,
        plan_id=plan_id,
    )  # fmt: skip
    _keep(batch, result.payment_id, body, None)


def _keep(batch: Batch, payment_id: str, body: dict[str, Any], salt: str | None) -> None:
    for row in reversed(batch.new_scopes):
        if row["payment_id"] == payment_id:
            row["consent_json"] = canonical(body).decode()  # JCS (proven equal to rfc8785)
            row["rules_salt"] = salt
            return
    raise AssertionError(f"payment {payment_id} has no scope row in this batch")


def attach_consents(batch: Batch) -> None:
    """Put each recorded consent in the audit entry that decided its payment (`data.consent`)."""
    recorded = {
        row["payment_id"]: row["consent_json"]
        for row in batch.new_scopes
        if row.get("consent_json") is not None
    }
    if not recorded:
        return
    for _actor, action, _device, data in batch.audit:
        if action in DECISIONS and isinstance(data, dict) and data.get("payment_id") in recorded:
            data["consent"] = json.loads(recorded[data["payment_id"]])


def subjects(outgoing: Iterable[tuple[str, dict[str, Any]]]) -> list[str | None]:
    """What each outgoing result or event is about: the payment it names, else
    `<recipient device>/<order_id>`, else nothing."""
    found: list[str | None] = []
    for _topic, body in outgoing:
        payment_id, order_id = body.get("payment_id"), body.get("order_id")
        if payment_id:
            found.append(str(payment_id))
        elif order_id:
            found.append(f"{body.get('device_id')}/{order_id}")
        else:
            found.append(None)
    return found
