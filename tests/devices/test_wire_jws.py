"""`wire.sign` and `wire.verify` sign and check JWS with `cryptography` directly (for speed);
joserfc, a maintained JOSE library, must agree with them both ways."""

from __future__ import annotations

import base64
import json
import warnings

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from joserfc import jws
from joserfc.errors import SecurityWarning

from devices import wire

PAYLOAD = {"v": 1, "order_id": "o-1", "amount": 450, "note": "é"}


def _keys() -> list[wire.PrivateKey]:
    return [ec.generate_private_key(ec.SECP256R1()), ed25519.Ed25519PrivateKey.generate()]


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


@pytest.mark.parametrize("key", _keys(), ids=["es256", "ed25519"])
def test_what_wire_signs_joserfc_verifies(key: wire.PrivateKey) -> None:
    token = wire.sign(PAYLOAD, key)
    alg = wire.algorithm_for(key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        verified = jws.deserialize_compact(token, wire.jose_key(key.public_key()), algorithms=[alg])
    assert json.loads(verified.payload) == PAYLOAD
    assert verified.headers() == {"alg": alg}


@pytest.mark.parametrize("key", _keys(), ids=["es256", "ed25519"])
def test_what_joserfc_signs_wire_verifies(key: wire.PrivateKey) -> None:
    alg = wire.algorithm_for(key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        token = jws.serialize_compact(
            {"alg": alg, "typ": "JWT"}, json.dumps(PAYLOAD), wire.jose_key(key), algorithms=[alg]
        )
    decoded_alg, payload = wire.decode(token)
    wire.verify(token, decoded_alg, key.public_key())
    assert payload == PAYLOAD


@pytest.mark.parametrize("key", _keys(), ids=["es256", "ed25519"])
def test_refuses_tampering_other_keys_and_odd_headers(key: wire.PrivateKey) -> None:
    token = wire.sign(PAYLOAD, key)
    alg = wire.algorithm_for(key)
    header, payload, signature = token.split(".")
    stranger = _keys()[0 if alg == "ES256" else 1]  # the same kind of key, another one
    forged_payload = _b64(json.dumps({**PAYLOAD, "amount": 1}).encode())
    kid_header = _b64(json.dumps({"alg": alg, "kid": "x"}).encode())
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    for bad in (
        f"{header}.{forged_payload}.{signature}",
        f"{header}.{payload}.{flipped}",
        f"{header}.{payload}.{signature}=",
        f"{header}.{payload}",
        f"{kid_header}.{payload}.{signature}",
        f"{header}.{payload}.{signature[:20]}",
    ):
        with pytest.raises(wire.InvalidSignature):
            wire.verify(bad, alg, key.public_key())
    with pytest.raises(wire.InvalidSignature):
        wire.verify(token, alg, stranger.public_key())
    with pytest.raises(wire.InvalidSignature):
        wire.verify(token, "ES384", key.public_key())
    if alg == "EdDSA":  # the header's alg must be the one checked, synonyms included
        with pytest.raises(wire.InvalidSignature):
            wire.verify(token, "Ed25519", key.public_key())
