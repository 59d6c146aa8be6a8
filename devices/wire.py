"""The wire formats that firmware and the gateway share (contract section 6).

Orders and results are JWS compact serializations (RFC 7515) with `alg` ES256 or EdDSA
(`Ed25519` accepted as its RFC 9864 synonym); nothing else, `none` included, is verified.
A JOSE header holds `alg` and optionally `typ`, nothing else (`crit`, `jwk`, `kid`, ... are
refused as an invalid signature: the key is always the certificate's, never the header's).
Payloads are validated strictly: money is an integer of minor units, never a float or string.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from functools import lru_cache
from typing import Annotated, Any, Literal

from cryptography.exceptions import InvalidSignature as CryptoInvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)
from joserfc.jwk import ECKey, OKPKey
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    field_validator,
)

MAX_ORDER_BYTES = 8 * 1024
MAX_AMOUNT_MINOR = 10**12  # a trillion minor units: far above any machine payment
ALGORITHMS = frozenset({"ES256", "EdDSA", "Ed25519"})
HEADER_MEMBERS = frozenset({"alg", "typ"})  # contract section 10: nothing else in the header

PrivateKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_ES256 = ec.ECDSA(hashes.SHA256())
_SORTED_JSON = json.JSONEncoder(separators=(",", ":"), sort_keys=True)  # json.dumps's, made once
_HEADERS = {  # the protected header of what the gateway and the SDK sign, as joserfc wrote it
    alg: base64.urlsafe_b64encode(b'{"alg":"' + alg.encode() + b'"}').rstrip(b"=")
    for alg in ("ES256", "EdDSA")
}
Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Amount = Annotated[int, Field(ge=1, le=MAX_AMOUNT_MINOR)]
Nonce = Annotated[str, StringConstraints(min_length=1, max_length=64)]
Description = Annotated[str, StringConstraints(max_length=140)]


class InvalidMessage(Exception):
    """The message does not decode, or its payload does not fit the schema."""

    reason = "invalid_message"


class InvalidSignature(Exception):
    """The signature does not verify with the device's key, or its `alg` is not allowed."""

    reason = "invalid_signature"


class _Order(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    v: Literal[1]
    order_id: Id
    device_id: Id
    ts: int
    nonce: Nonce
    description: Description | None = None

    @field_validator("v", mode="before")
    @classmethod
    def _the_integer_one(cls, value: object) -> object:
        if type(value) is not int:  # Literal[1] alone takes `true` (True == 1), even strictly
            raise ValueError("v must be the integer 1")
        return value


class PayOrder(_Order):
    type: Literal["pay"]
    payee: Id
    amount: Amount
    currency: Currency


class HoldOrder(_Order):
    type: Literal["hold"]
    payee: Id
    amount: Amount
    currency: Currency
    expires_in: Annotated[int, Field(ge=60, le=86400)] = 900


class CaptureOrder(_Order):
    type: Literal["capture"]
    payment_id: Id
    amount: Amount
    currency: Currency | None = None
    payee: Id | None = None


class VoidOrder(_Order):
    type: Literal["void"]
    payment_id: Id
    currency: Currency | None = None
    payee: Id | None = None


class RefundOrder(_Order):
    type: Literal["refund"]
    payment_id: Id
    amount: Amount
    currency: Currency | None = None
    payee: Id | None = None


Order = PayOrder | HoldOrder | CaptureOrder | VoidOrder | RefundOrder
_ORDER = TypeAdapter(Annotated[Order, Field(discriminator="type")])


def jose_key(key: PrivateKey | PublicKey) -> ECKey | OKPKey:
    """The JOSE form of a key (cache it: importing costs more than verifying)."""
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        return ECKey.import_key(key)
    return OKPKey.import_key(key)


def algorithm_for(key: PrivateKey | PublicKey) -> str:
    """ES256 for P-256 keys, EdDSA for Ed25519 keys."""
    is_ec = isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey)
    return "ES256" if is_ec else "EdDSA"


def sign(payload: dict[str, Any], key: PrivateKey, jose: ECKey | OKPKey | None = None) -> str:
    """A compact JWS of the JSON payload, signed with the key's algorithm.

    Signed with `cryptography` directly (joserfc added more than the signature's own cost);
    `jose` is accepted for callers that cache it and no longer needed."""
    del jose
    alg = algorithm_for(key)
    body = _SORTED_JSON.encode(payload).encode()
    signing_input = _HEADERS[alg] + b"." + _b64(body)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        r, s = decode_dss_signature(key.sign(signing_input, _ES256))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        signature = key.sign(signing_input)
    return (signing_input + b"." + _b64(signature)).decode("ascii")


def decode(token: str | bytes) -> tuple[str, dict[str, Any]]:
    """Decode without verifying: (alg, payload object); raises InvalidMessage."""
    if isinstance(token, bytes):
        try:
            token = token.decode("ascii")
        except UnicodeDecodeError as exc:
            raise InvalidMessage("the order is not a JWS compact serialization") from exc
    if len(token) > MAX_ORDER_BYTES * 2:
        raise InvalidMessage("the order is too large")
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidMessage("the order is not a JWS compact serialization")
    if not all(_B64URL.fullmatch(part) for part in parts):  # a newline, padding, spaces...
        raise InvalidMessage("a JWS segment is not base64url without padding (RFC 7515)")
    header, payload = _json_segment(parts[0]), _json_segment(parts[1])
    if not isinstance(header, dict) or not isinstance(header.get("alg"), str):
        raise InvalidMessage("the JOSE header is not an object with an alg")
    if not isinstance(payload, dict):
        raise InvalidMessage("the payload is not a JSON object")
    return header["alg"], payload


def payload_digest(payload: dict[str, Any]) -> str:
    """SHA-256 (lowercase hex) of a decoded payload as JSON with sorted keys, no spaces and
    ASCII escapes (Python's `json.dumps(payload, sort_keys=True, separators=(",", ":"))`):
    the same whatever the key order and spacing sent. The gateway's idempotency key of an order,
    and what the decision's audit entry names the order by (`order_sha256`)."""
    return hashlib.sha256(_SORTED_JSON.encode(payload).encode()).hexdigest()


def verify(token: str, alg: str, key: PublicKey, jose: ECKey | OKPKey | None = None) -> None:
    """Check the signature with this key, and that the JOSE header holds only `alg` and
    `typ`; raises InvalidSignature.

    Verified with `cryptography` directly (the header parsed here, so its `alg` is the one
    checked); `jose` is accepted for callers that cache it and no longer needed."""
    del jose
    if alg not in ALGORITHMS or algorithm_family(alg) != algorithm_for(key):
        raise InvalidSignature(f"alg {alg!r} is not allowed for this device's key")
    try:
        header_b64, payload_b64, signature_b64 = token.split(".")
        is_object, header_alg, members = _header(header_b64)
        signature = _b64decode(signature_b64)
    except (ValueError, InvalidMessage) as exc:
        raise InvalidSignature("the signature does not verify") from exc
    if not is_object or header_alg != alg:
        raise InvalidSignature("the JOSE header's alg is not the one checked")
    extra = members - HEADER_MEMBERS
    if extra:  # crit, jwk, x5c, jku, kid...: nothing a verifier here would honour
        raise InvalidSignature(f"the JOSE header may hold only alg and typ, not {sorted(extra)}")
    signing_input = f"{header_b64}.{payload_b64}".encode("ascii")
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            if len(signature) != 64:
                raise InvalidSignature("an ES256 signature is 64 bytes")
            r, s = int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            key.verify(encode_dss_signature(r, s), signing_input, _ES256)
        else:
            key.verify(signature, signing_input)
    except (CryptoInvalidSignature, ValueError) as exc:
        raise InvalidSignature("the signature does not verify") from exc


def header_alg(token: str) -> str | None:
    """The JOSE header's `alg`, without decoding the rest (None when the header is not an
    object with a string `alg`)."""
    try:
        is_object, alg, _ = _header(token.partition(".")[0])
    except InvalidMessage:
        return None
    return alg if is_object and isinstance(alg, str) else None


@lru_cache(maxsize=64)  # the same few headers on every order; a failure is not cached
def _header(segment: str) -> tuple[bool, object, frozenset[str]]:
    """(whether the JOSE header is a JSON object, its `alg`, its member names); raises
    InvalidMessage when the segment is not base64url JSON."""
    header = _json_segment(segment)
    if not isinstance(header, dict):
        return False, None, frozenset()
    return True, header.get("alg"), frozenset(header)


def algorithm_family(alg: str) -> str:
    """EdDSA and its synonym Ed25519 are one family."""
    return "EdDSA" if alg in ("EdDSA", "Ed25519") else alg


def parse_order(payload: dict[str, Any], topic_device_id: str) -> Order:
    """The order in a decoded payload; raises InvalidMessage (device_id must match the topic)."""
    try:
        order = _ORDER.validate_python(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "payload"
        raise InvalidMessage(f"{where}: {first['msg']}") from None
    if order.device_id != topic_device_id:
        raise InvalidMessage("device_id does not match the topic")
    return order


def order_id_of(payload: object) -> str | None:
    """The payload's order_id when it is a valid id, for results of rejected messages."""
    if isinstance(payload, dict):
        value = payload.get("order_id")
        if isinstance(value, str) and _ID.fullmatch(value):
            return value
    return None


def payload_of(token: bytes) -> object:
    """The payload segment as JSON, even when the rest of the token is broken, else None
    (a rejected message's result still names its order_id when it can)."""
    try:
        return _json_segment(token.split(b".")[1].decode("ascii"))
    except (IndexError, UnicodeDecodeError, InvalidMessage):
        return None


def _b64(raw: bytes) -> bytes:
    return base64.urlsafe_b64encode(raw).rstrip(b"=")


def _b64decode(segment: str) -> bytes:
    """base64url without padding, strictly (ValueError otherwise)."""
    if not _B64URL.fullmatch(segment):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def _json_segment(segment: str) -> Any:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        return json.loads(raw)
    except (binascii.Error, ValueError, RecursionError) as exc:
        raise InvalidMessage("a JWS segment is not base64url JSON") from exc
