"""Checking an evidence bundle offline (`kym evidence verify FILE --ca CA_BUNDLE`).

Given the bundle and the CA bundle of `GET /v1/ca`, it checks: the device certificate chains to
a root of the CA bundle at the order's `ts` and names the device that the order names; the
gateway certificate chains to another root of it (the service root, never the device root) and
carries the URI SAN `spiffe://<trust domain>/gateway/signer`; every signature (order, consent,
results, tree head); that each result and the consent name this payment, or this device's
order with a null `payment_id`; that the bundle holds the consent, an `approved` result for
the order naming the payment and the decision's audit entry, with the order's type, amount,
currency and payee (and its digest, `order_sha256`, when the entry names it: newer entries
do); and every entry's inclusion proof against the signed tree head. Whether the bundle holds
*every* entry or result about the payment cannot be checked offline.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.x509.verification import (
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from devices import wire
from gateway.audit import heads, log
from gateway.audit.entries import InvalidContent, canonical_rfc8785
from gateway.evidence import consent

DECISIONS = frozenset({"order.approved", "approval.approve"})


@dataclass
class Findings:
    """What failed, in the order checked (empty when the bundle holds)."""

    problems: list[str] = field(default_factory=list)

    def fail(self, part: str, why: str) -> None:
        self.problems.append(f"{part}: {why}")


def verify_bundle(bundle: Any, ca_pem: bytes) -> list[str]:
    """Every check of the module docstring; the problems found, each naming its part."""
    found = Findings()
    if not isinstance(bundle, dict) or not isinstance(bundle.get("payment_id"), str):
        return ["bundle: not a JSON object with a payment_id"]
    try:
        authorities = x509.load_pem_x509_certificates(ca_pem)
    except ValueError as exc:
        return [f"CA bundle: not PEM certificates ({exc})"]
    order, device_root, domain = check_order(found, bundle.get("order"), authorities)
    signed_at = _head_ts(bundle.get("audit"))  # checked with the head's signature below
    gateway = bundle.get("gateway")
    gateway_key = check_gateway(found, gateway, authorities, device_root, domain, signed_at)
    if gateway_key is None or order is None:
        return found.problems
    payment_id = bundle["payment_id"]
    recorded = check_audit(found, bundle.get("audit"), gateway_key, payment_id, order)
    check_consent(found, bundle.get("consent"), gateway_key, payment_id, order, recorded)
    check_results(found, bundle.get("results"), gateway_key, payment_id, order)
    return found.problems


# --- the order and its device ----------------------------------------------------------------


def check_order(
    found: Findings, part: Any, authorities: list[x509.Certificate]
) -> tuple[dict[str, Any] | None, x509.Certificate | None, str | None]:
    """(the order's payload, the root its certificate chains to, the trust domain) when the
    order verifies; problems otherwise."""
    if not isinstance(part, dict) or not isinstance(part.get("jws"), str):
        found.fail("order", "the bundle holds no order JWS")
        return None, None, None
    try:
        leaf = x509.load_pem_x509_certificate(str(part.get("certificate")).encode())
        chain = x509.load_pem_x509_certificates(str(part.get("chain")).encode())
        alg, payload = wire.decode(part["jws"])
    except (ValueError, wire.InvalidMessage) as exc:
        found.fail("order", f"its JWS, certificate or chain does not parse ({exc})")
        return None, None, None
    ts = payload.get("ts")
    if not isinstance(ts, int) or isinstance(ts, bool):
        found.fail("order", "its payload has no integer ts")
        return None, None, None
    root = chain_root(found, "order certificate", leaf, chain, authorities, ts, None)
    device_id, domain = device_identity(leaf)
    if device_id != payload.get("device_id"):
        found.fail(
            "order", f"it names device {payload.get('device_id')!r}, the certificate {device_id!r}"
        )
    try:
        wire.verify(part["jws"], alg, _public_key(leaf))
    except (wire.InvalidSignature, TypeError) as exc:
        found.fail("order", f"its signature does not verify with the device certificate ({exc})")
    return payload, root, domain


def device_identity(certificate: x509.Certificate) -> tuple[str | None, str | None]:
    """(device id, trust domain) from a device certificate's SPIFFE SAN, else its CN."""
    for uri in _uris(certificate):
        if uri.startswith("spiffe://") and "/device/" in uri:
            domain, _, device_id = uri[len("spiffe://") :].partition("/device/")
            return device_id, domain
    names = certificate.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return (str(names[0].value) if names else None), None


def chain_root(
    found: Findings,
    what: str,
    leaf: x509.Certificate,
    chain: list[x509.Certificate],
    authorities: list[x509.Certificate],
    at: int,
    refused_root: x509.Certificate | None,
) -> x509.Certificate | None:
    """The root of the CA bundle (other than `refused_root`) that `leaf` chains to at `at`."""
    try:
        when = datetime.fromtimestamp(at, UTC)
    except (OverflowError, OSError, ValueError):
        found.fail(what, f"cannot be checked at ts {at}")
        return None
    roots = [c for c in authorities if c.issuer == c.subject and c != refused_root]
    if not roots:
        found.fail(
            what, "the CA bundle holds no root certificate to check it against (give GET /v1/ca)"
        )
        return None
    intermediates = [c for c in chain + authorities if c.issuer != c.subject]
    verifier = (
        PolicyBuilder()
        .store(Store(roots))
        .time(when)
        .extension_policies(
            ca_policy=ExtensionPolicy.webpki_defaults_ca(), ee_policy=ExtensionPolicy.permit_all()
        )
        .build_client_verifier()
    )
    try:
        verified = verifier.verify(leaf, intermediates)
    except (VerificationError, ValueError) as exc:
        where = " other than the device root" if refused_root is not None else ""
        found.fail(what, f"does not chain to a root of the CA bundle{where} at ts {at} ({exc})")
        return None
    return verified.chain[-1]


# --- the gateway's certificate ---------------------------------------------------------------


def check_gateway(
    found: Findings,
    part: Any,
    authorities: list[x509.Certificate],
    device_root: x509.Certificate | None,
    domain: str | None,
    signed_at: int | None = None,
) -> wire.PublicKey | None:
    """The gateway's public key when its certificate chains to the service root at `signed_at`
    (the tree head's time: the bundle's, when the certificate must be valid) and names the
    signer; problems otherwise."""
    try:
        leaf = x509.load_pem_x509_certificate(str(part["certificate"]).encode())
        chain = x509.load_pem_x509_certificates(str(part["chain"]).encode())
    except (TypeError, KeyError, ValueError) as exc:
        found.fail("gateway certificate", f"missing or not PEM ({exc})")
        return None
    at = int(leaf.not_valid_before_utc.timestamp()) + 1 if signed_at is None else signed_at
    chain_root(found, "gateway certificate", leaf, chain, authorities, at, device_root)
    signer = [u for u in _uris(leaf) if u.startswith("spiffe://") and u.endswith("/gateway/signer")]
    wanted = f"spiffe://{domain}/gateway/signer" if domain else None
    if not signer or (wanted is not None and wanted not in signer):
        found.fail(
            "gateway certificate",
            f"does not carry the URI SAN {wanted or 'spiffe://<trust domain>/gateway/signer'}",
        )
    try:
        return _public_key(leaf)
    except TypeError as exc:
        found.fail("gateway certificate", str(exc))
        return None


# --- the audit log ---------------------------------------------------------------------------


def check_audit(
    found: Findings, part: Any, key: wire.PublicKey, payment_id: str, order: dict[str, Any]
) -> dict[str, Any] | None:
    """Each entry's content, name and inclusion proof against the signed tree head; the
    decision's entry must be there. The consent recorded in that entry, if any."""
    if not isinstance(part, dict):
        found.fail("audit", "the bundle holds no audit part")
        return None
    try:
        head = heads.verify(str(part.get("tree_head")), key)
    except heads.InvalidTreeHead as exc:
        found.fail("tree head", str(exc))
        return None
    entries, proofs = part.get("entries"), part.get("proofs")
    if not isinstance(entries, list) or not isinstance(proofs, list) or len(entries) != len(proofs):
        found.fail("audit", "entries and proofs are not two lists of the same length")
        return None
    root, decision = bytes.fromhex(head.root_hash), None
    for entry, proof in zip(entries, proofs, strict=True):
        content = check_entry(found, entry, proof, head.tree_size, root, payment_id, order)
        if content is not None and _is_decision(content, payment_id, order):
            decision = content
    if decision is None:
        found.fail(
            "audit",
            f"no entry records order {order.get('order_id')!r} decided as payment {payment_id}",
        )
        return None
    data = decision["data"]
    for name in ("type", "amount", "currency", "payee"):
        if data.get(name) != order.get(name):
            found.fail(
                f"audit entry {decision['index']}",
                f"its {name} {data.get(name)!r} is not the order's {order.get(name)!r}",
            )
    digest = data.get("order_sha256")  # entries name it since; older ones do not
    if digest is not None and digest != wire.payload_digest(order):
        found.fail(
            f"audit entry {decision['index']}",
            "its order_sha256 is not the digest of the bundle's order (another order signed "
            "with the same order_id)",
        )
    recorded = data.get("consent")
    return recorded if isinstance(recorded, dict) else None


def check_entry(
    found: Findings,
    entry: Any,
    proof: Any,
    tree_size: int,
    root: bytes,
    payment_id: str,
    order: dict[str, Any],
) -> dict[str, Any] | None:
    """One entry: its index, what it names, and its inclusion proof."""
    index = entry.get("index") if isinstance(entry, dict) else None
    content = entry.get("content") if isinstance(entry, dict) else None
    what = f"audit entry {index}"
    if not isinstance(index, int) or not isinstance(content, dict) or content.get("index") != index:
        found.fail(what, "is not {index, content} with the same index in its content")
        return None
    names_order = content.get("order_id") == order.get("order_id") and content.get(
        "device_id"
    ) == order.get("device_id")
    if content.get("payment_id") != payment_id and not names_order:
        found.fail(what, "names neither this payment nor this device's order")
    try:
        leaf = log.leaf_hash(canonical_rfc8785(content))
        path = [bytes.fromhex(h) for h in proof]
    except (InvalidContent, ValueError, TypeError) as exc:
        found.fail(what, f"its content or proof is malformed ({exc})")
        return None
    if not log.verify_inclusion(index, tree_size, leaf, path, root):
        found.fail(
            what, f"its inclusion proof does not lead to the tree head's root (size {tree_size})"
        )
        return None
    return content


def _is_decision(content: dict[str, Any], payment_id: str, order: dict[str, Any]) -> bool:
    return (
        content.get("action") in DECISIONS
        and content.get("payment_id") == payment_id
        and content.get("order_id") == order.get("order_id")
        and isinstance(content.get("data"), dict)
    )


# --- the consent and the results -------------------------------------------------------------


def check_consent(
    found: Findings,
    part: Any,
    key: wire.PublicKey,
    payment_id: str,
    order: dict[str, Any],
    recorded: dict[str, Any] | None,
) -> None:
    """The consent is the gateway's, names this payment and order, and says what the decision's
    audit entry recorded."""
    if not isinstance(part, dict) or not isinstance(part.get("jws"), str):
        found.fail("consent", "the bundle holds no consent")
        return
    body = _signed_payload(found, "consent", part["jws"], key, consent.TYP)
    if body is None:
        return
    if body.get("payment_id") != payment_id or body.get("order_id") != order.get("order_id"):
        found.fail("consent", "it does not name this payment and its order")
    if body.get("basis") not in consent.BASES or body.get("basis") != part.get("basis"):
        found.fail(
            "consent", f"its basis {body.get('basis')!r} is not the bundle's {part.get('basis')!r}"
        )
    if recorded is not None and recorded != body:
        found.fail("consent", "it is not the consent recorded in the decision's audit entry")


def check_results(
    found: Findings, part: Any, key: wire.PublicKey, payment_id: str, order: dict[str, Any]
) -> None:
    """Every result is the gateway's and about this payment; one approves the order."""
    if not isinstance(part, list):
        found.fail("results", "not a list of JWS strings")
        return
    approved = False
    for n, token in enumerate(part):
        body = _signed_payload(found, f"result {n}", str(token), key, None)
        if body is None:
            continue
        about_order = (
            body.get("payment_id") is None
            and body.get("order_id") == order.get("order_id")
            and body.get("device_id") == order.get("device_id")
        )
        if body.get("payment_id") != payment_id and not about_order:
            found.fail(f"result {n}", "names neither this payment nor this device's order")
        approved = approved or (
            body.get("status") == "approved"
            and body.get("payment_id") == payment_id
            and body.get("order_id") == order.get("order_id")
            and body.get("device_id") == order.get("device_id")
            and body.get("amount") == order.get("amount")
            and body.get("currency") == order.get("currency")
        )
    if not approved:
        found.fail(
            "results",
            "no approved result for the order names this payment with its amount and currency",
        )


def _signed_payload(
    found: Findings, what: str, token: str, key: wire.PublicKey, typ: str | None
) -> dict[str, Any] | None:
    alg = wire.algorithm_for(key)
    try:
        header = json.loads(_b64(token.split(".")[0]))
        wire.verify(token, alg, key)
        body = json.loads(_b64(token.split(".")[1]))
    except (ValueError, IndexError, wire.InvalidSignature) as exc:
        found.fail(what, f"its signature does not verify with the gateway certificate ({exc})")
        return None
    if typ is not None and header.get("typ") != typ:
        found.fail(what, f"its JOSE typ is {header.get('typ')!r}, not {typ}")
    if not isinstance(body, dict):
        found.fail(what, "its payload is not a JSON object")
        return None
    return body


def _head_ts(part: Any) -> int | None:
    try:
        ts = json.loads(_b64(str(part["tree_head"]).split(".")[1]))["ts"]
    except (TypeError, KeyError, IndexError, ValueError):
        return None
    return ts if isinstance(ts, int) and not isinstance(ts, bool) and ts > 0 else None


def _b64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _uris(certificate: x509.Certificate) -> list[str]:
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(names.value.get_values_for_type(x509.UniformResourceIdentifier))


def _public_key(certificate: x509.Certificate) -> wire.PublicKey:
    key = certificate.public_key()
    if not isinstance(key, wire.PublicKey):
        raise TypeError("the certificate's key is neither P-256 nor Ed25519")
    return key
