"""An evidence-bundle verifier written for the tests from the RFCs alone (RFC 7515 JWS with
ES256 per RFC 7518 and EdDSA per RFC 8037, RFC 5280 chains checked signature by signature,
RFC 8785 JCS for integer-only JSON, RFC 9162 section 2.1 Merkle inclusion proofs). It imports
nothing from the gateway, so that it checks the production code instead of agreeing with it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature


def b64url(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def jws_payload(token: str, key: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(header, payload) of a compact JWS whose signature `key` verifies; raises otherwise."""
    header_b64, payload_b64, signature_b64 = token.split(".")
    header = json.loads(b64url(header_b64))
    signing_input = f"{header_b64}.{payload_b64}".encode()
    signature = b64url(signature_b64)
    if header["alg"] == "ES256":
        assert isinstance(key, ec.EllipticCurvePublicKey) and len(signature) == 64
        r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
        key.verify(encode_dss_signature(r, s), signing_input, ec.ECDSA(hashes.SHA256()))
    else:
        assert header["alg"] in ("EdDSA", "Ed25519")
        assert isinstance(key, ed25519.Ed25519PublicKey)
        key.verify(signature, signing_input)
    return header, json.loads(b64url(payload_b64))


def jcs(value: Any) -> bytes:
    """RFC 8785 for JSON without floats: sorted keys, no whitespace, minimal escapes, UTF-8."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def included(index: int, size: int, leaf: bytes, proof: list[bytes], root: bytes) -> bool:
    """RFC 9162 section 2.1.3.2, step by step."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = node(p, r)
            while fn % 2 == 0 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            r = node(r, p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root


def chains(
    leaf: x509.Certificate,
    chain: list[x509.Certificate],
    roots: list[x509.Certificate],
    at: datetime,
) -> x509.Certificate:
    """The root (one of `roots`) that `leaf` chains to through `chain`, each certificate
    valid at `at` and signed by the next; raises otherwise."""  # fmt: skip
    current, pool = leaf, chain + roots
    for _ in range(5):
        assert current.not_valid_before_utc <= at <= current.not_valid_after_utc
        if current in roots:
            return current
        issuer = next(c for c in pool if c.subject == current.issuer and c != current)
        current.verify_directly_issued_by(issuer)
        current = issuer
    raise AssertionError("chain too long")


def uris(certificate: x509.Certificate) -> list[str]:
    san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    return list(san.value.get_values_for_type(x509.UniformResourceIdentifier))


def check(bundle: dict[str, Any], ca_pem: bytes) -> None:
    """Raises (AssertionError, InvalidSignature, ValueError, ...) unless the bundle holds."""
    authorities = x509.load_pem_x509_certificates(ca_pem)
    roots = [c for c in authorities if c.subject == c.issuer]
    payment_id = bundle["payment_id"]
    # the order and its device
    device_cert = x509.load_pem_x509_certificate(bundle["order"]["certificate"].encode())
    _h, order = jws_payload(bundle["order"]["jws"], device_cert.public_key())
    device_chain = x509.load_pem_x509_certificates(bundle["order"]["chain"].encode())
    device_root = chains(device_cert, device_chain, roots, datetime.fromtimestamp(order["ts"], UTC))
    [device_uri] = uris(device_cert)
    domain, _, device_id = device_uri.removeprefix("spiffe://").partition("/device/")
    assert device_id == order["device_id"]
    # the gateway
    gateway_cert = x509.load_pem_x509_certificate(bundle["gateway"]["certificate"].encode())
    gateway_chain = x509.load_pem_x509_certificates(bundle["gateway"]["chain"].encode())
    service_roots = [r for r in roots if r != device_root]
    chains(gateway_cert, gateway_chain, service_roots, datetime.now(UTC))
    assert uris(gateway_cert) == [f"spiffe://{domain}/gateway/signer"]
    key = gateway_cert.public_key()
    # the consent
    header, consent = jws_payload(bundle["consent"]["jws"], key)
    assert header["typ"] == "kym-consent"
    assert (consent["payment_id"], consent["order_id"]) == (payment_id, order["order_id"])
    assert consent["basis"] == bundle["consent"]["basis"]
    # the results
    approved = []
    for token in bundle["results"]:
        _h, result = jws_payload(token, key)
        mine = result["payment_id"] is None and result["order_id"] == order["order_id"]
        assert result["payment_id"] == payment_id or mine, result
        if result.get("status") == "approved" and result["order_id"] == order["order_id"]:
            approved.append(result)
    assert [(r["payment_id"], r["amount"], r["currency"]) for r in approved][:1] == [
        (payment_id, order["amount"], order["currency"])
    ]
    # the log
    header, head = jws_payload(bundle["audit"]["tree_head"], key)
    assert header["typ"] == "kym-tree-head"
    root = bytes.fromhex(head["root_hash"])
    decided = False
    for entry, proof in zip(bundle["audit"]["entries"], bundle["audit"]["proofs"], strict=True):
        content = entry["content"]
        assert content["index"] == entry["index"]
        leaf = hashlib.sha256(b"\x00" + jcs(content)).digest()
        path = [bytes.fromhex(h) for h in proof]
        assert included(entry["index"], head["tree_size"], leaf, path, root), entry["index"]
        if content["action"] in ("order.approved", "approval.approve"):
            data = content["data"]
            assert content["payment_id"] == payment_id
            assert (data["type"], data["amount"], data["currency"], data["payee"]) == (
                order["type"], order["amount"], order["currency"], order["payee"]
            )  # fmt: skip
            if "order_sha256" in data:  # the order's JSON with sorted keys, no spaces
                canonical = json.dumps(order, sort_keys=True, separators=(",", ":"))
                assert data["order_sha256"] == hashlib.sha256(canonical.encode()).hexdigest()
            assert data["consent"] == consent
            decided = True
    assert decided, "no decision entry"
