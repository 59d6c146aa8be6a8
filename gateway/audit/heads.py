"""Signed tree heads: a JWS (`typ` `kym-tree-head`) of `{"tree_size", "root_hash", "ts"}`.

Pure: the key and the time are parameters. The payload is JCS (RFC 8785), so the same head
always has the same bytes; the header holds only `alg` and `typ`.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from typing import Any

import rfc8785
from joserfc import jws
from joserfc.errors import JoseError, SecurityWarning
from joserfc.jwk import ECKey, OKPKey

from devices import wire

TYP = "kym-tree-head"
_HEX64 = re.compile(r"[0-9a-f]{64}")


class InvalidTreeHead(ValueError):
    """A tree head whose signature, header or payload is not what the gateway signs."""


@dataclass(frozen=True)
class TreeHead:
    """What a signed tree head says."""

    tree_size: int
    root_hash: str  # lowercase hex
    ts: int

    def payload(self) -> dict[str, Any]:
        """The JSON object that is signed."""
        return {"tree_size": self.tree_size, "root_hash": self.root_hash, "ts": self.ts}


def sign(head: TreeHead, key: wire.PrivateKey, jose: ECKey | OKPKey | None = None) -> str:
    """The compact JWS of a tree head, signed with the gateway's key."""
    alg = wire.algorithm_for(key)
    body = rfc8785.dumps(head.payload())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)  # EdDSA is the contract's name
        return jws.serialize_compact(
            {"alg": alg, "typ": TYP}, body, jose or wire.jose_key(key), algorithms=[alg]
        )


def verify(token: str, key: wire.PublicKey, jose: ECKey | OKPKey | None = None) -> TreeHead:
    """The head a JWS signed by `key` says; raises InvalidTreeHead."""
    alg = wire.algorithm_for(key)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SecurityWarning)
            obj = jws.deserialize_compact(token, jose or wire.jose_key(key), algorithms=[alg])
    except (JoseError, ValueError) as exc:
        raise InvalidTreeHead(f"its signature does not verify ({exc})") from exc
    if obj.headers() != {"alg": alg, "typ": TYP}:
        raise InvalidTreeHead(f"its JOSE header is {obj.headers()}, not alg {alg} and typ {TYP}")
    return _head_of(obj.payload)


def _head_of(payload: bytes) -> TreeHead:
    try:
        value = json.loads(payload)
    except ValueError as exc:
        raise InvalidTreeHead("its payload is not JSON") from exc
    if not isinstance(value, dict) or set(value) != {"tree_size", "root_hash", "ts"}:
        raise InvalidTreeHead("its payload is not {tree_size, root_hash, ts}")
    size, root, ts = value["tree_size"], value["root_hash"], value["ts"]
    if not (_is_int(size) and size >= 0 and _is_int(ts) and isinstance(root, str)):
        raise InvalidTreeHead("its tree_size or ts is not a non-negative integer")
    if not _HEX64.fullmatch(root):
        raise InvalidTreeHead("its root_hash is not 64 lowercase hex digits")
    return TreeHead(size, root, ts)


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
