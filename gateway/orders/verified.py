"""What is known of an order's signature before its transaction: the pure part of checking it
ahead (`gateway.orders.verifier`'s child imports only this and the wire format)."""

from __future__ import annotations

from dataclasses import dataclass

from devices import wire


@dataclass(frozen=True)
class Verified:
    """An order's signature checked ahead: the certificate serials whose keys were tried with
    the JOSE header's `alg`, and those of them that verified it."""

    alg: str
    tried: frozenset[str]
    good: frozenset[str]


def verify_against(raw: bytes, keys: list[tuple[str, wire.PublicKey]]) -> Verified | None:
    """Try each (serial, key) on a JWS (what `gateway.orders.verifier`'s process runs); None
    when the token has no usable header, which the transaction then rejects itself."""
    try:
        token = raw.decode("ascii")
    except UnicodeDecodeError:
        return None
    alg = wire.header_alg(token)
    if alg is None:
        return None
    good = []
    for serial, public in keys:
        try:
            wire.verify(token, alg, public)
        except wire.InvalidSignature:
            continue
        good.append(serial)
    return Verified(alg, frozenset(s for s, _ in keys), frozenset(good))
