"""The consent behind a payment, as the gateway states it (contract section 9). Pure.

`{"payment_id", "order_id", "basis", "rules_sha256" | "mandate_id" | "approval_id",
"decided_by", "decided_at"}`: `basis` is `rules` (within the owner's rules, no approval
needed), `mandate` (a standing consent covered it), `approval` (the owner approved it) or
`instalments`. `rules_sha256` hides the rules behind a salt that only the payer's owner and the
admin are shown, so that a payee cannot guess an owner's limits from it.
"""

from __future__ import annotations

import hashlib
import warnings
from typing import Any

import rfc8785
from joserfc import jws
from joserfc.errors import SecurityWarning
from joserfc.jwk import ECKey, OKPKey

from devices import wire

TYP = "kym-consent"
BASES = ("rules", "mandate", "approval", "instalments")
REFERENCE = {"rules": "rules_sha256", "mandate": "mandate_id", "approval": "approval_id"}


def rules_sha256(rules: dict[str, Any], salt_hex: str) -> str:
    """Lowercase-hex SHA-256 of JCS({"rules": rules, "salt": salt})."""
    return hashlib.sha256(rfc8785.dumps({"rules": rules, "salt": salt_hex})).hexdigest()


def rules_sha256_of_jcs(rules_jcs: bytes, salt_hex: str) -> str:
    """`rules_sha256` from the rules' JCS already made: JCS({"rules", "salt"}) is that text
    between `{"rules":` and `,"salt":"<salt>"}`, since "rules" sorts before "salt"."""
    text = b'{"rules":' + rules_jcs + b',"salt":"' + salt_hex.encode() + b'"}'
    return hashlib.sha256(text).hexdigest()


def payload(
    payment_id: str,
    order_id: str,
    basis: str,
    reference: str,
    decided_by: str,
    decided_at: int,
    plan_id: str | None = None,
) -> dict[str, Any]:
    """The consent's payload; `reference` is the basis's rules digest, mandate or approval id."""
    assert basis in BASES, basis
    body: dict[str, Any] = {
        "payment_id": payment_id,
        "order_id": order_id,
        "basis": basis,
        REFERENCE.get(basis, "approval_id"): reference,
        "decided_by": decided_by,
        "decided_at": decided_at,
    }
    if plan_id is not None:
        body["plan_id"] = plan_id
    return body


def sign(body: dict[str, Any], key: wire.PrivateKey, jose: ECKey | OKPKey | None = None) -> str:
    """The compact JWS (`typ` kym-consent, JCS payload) of a consent, with the gateway's key."""
    alg = wire.algorithm_for(key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # EdDSA is the contract's name
        return jws.serialize_compact(
            {"alg": alg, "typ": TYP}, rfc8785.dumps(body), jose or wire.jose_key(key),
            algorithms=[alg],
        )  # fmt: skip
