"""Fuzzed messages: whatever arrives, the gateway answers `rejected`, moves nothing, keeps going."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices import wire
from tests.support.world import World


def b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


def payloads(device_id: str) -> st.SearchStrategy[dict[str, Any]]:
    base = {
        "v": 1,
        "order_id": "o-fuzz",
        "type": "pay",
        "device_id": device_id,
        "payee": "mer_x",
        "amount": 5,
        "currency": "EUR",
        "ts": 0,
        "nonce": "n",
    }
    return st.builds(
        lambda key, value: {**base, key: value}, st.sampled_from(sorted(base)), json_values
    )


def test_fuzzed_messages_are_rejected_without_moving_money(world: World) -> None:
    car = world.device("car", rules={"currency": "EUR"})
    before = world.balance(car)
    topic = car.topic

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        st.one_of(
            st.binary(max_size=300),
            st.text(max_size=200).map(str.encode),
            st.builds(
                lambda h, p, s: b".".join([b64(h), b64(p), b64(s)]),
                st.binary(max_size=40),
                st.binary(max_size=80),
                st.binary(max_size=64),
            ),
            st.builds(
                lambda h, p: b".".join(
                    [b64(json.dumps(h).encode()), b64(json.dumps(p).encode()), b"sig"]
                ),
                json_values,
                json_values,
            ),
            st.builds(
                lambda alg, p: b".".join(
                    [b64(json.dumps({"alg": alg}).encode()), b64(json.dumps(p).encode()), b""]
                ),
                st.sampled_from(["none", "HS256", "RS256", "ES384", "ES256", "EdDSA"]),
                payloads(car.id),
            ),
            payloads(car.id).map(lambda p: wire.sign(p, car.key).encode()),
        )
    )
    def check(raw: bytes) -> None:
        out = world.deliver([(topic, raw)])
        results = [m for m in out if "status" in m]
        assert len(results) == 1
        assert results[0]["status"] in ("rejected", "declined"), results[0]
        if results[0]["status"] == "rejected":
            assert results[0]["reason"] in (
                "invalid_message",
                "invalid_signature",
                "stale_order",
                "idempotency_conflict",
            )
            assert results[0]["payment_id"] is None and results[0]["amount"] is None

    check()
    assert world.balance(car) == before


def test_huge_and_deeply_nested_payloads_are_rejected(world: World) -> None:
    car = world.device("car", rules={"currency": "EUR"})
    nested = b"[" * 5000 + b"1" + b"]" * 5000
    huge = wire.sign({"v": 1, "order_id": "o-big", "blob": "x" * 100_000}, car.key).encode()
    deep = b".".join([b64(b'{"alg":"ES256"}'), b64(nested), b"x"])
    out = world.deliver([(car.topic, huge), (car.topic, deep), (car.topic, b"\xff" * 10)])
    assert [(m["status"], m["reason"]) for m in out] == [("rejected", "invalid_message")] * 3
    good = car.send(car.order(type="pay", payee="mer_x", amount=1, currency="EUR"))
    assert good["reason"] == "unknown_payee"  # decided normally: the gateway kept serving
