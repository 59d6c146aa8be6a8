"""Per-device rate limits and the JOSE header (CONTRACT.md section 10) on a real database.

A gateway client's `Throttle` runs on every message it receives, before the worker's queue; here
it is handed the messages and a recording MQTT client (what it published); the client
acknowledges at once what it refuses, and what it admits is decided as a worker would. The real
brokers are in tests/security/test_mqtt_flood.py.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Any

import sqlalchemy as sa
from joserfc import jws

from devices import wire
from gateway.audit.store import audit_log
from gateway.context import Context
from gateway.mqtt.client import Inbound
from gateway.mqtt.throttle import Throttle
from gateway.orders import store as order_store
from tests.support.world import Dev, World


@dataclass
class RecordingClient:
    published: list[tuple[str, bytes]] = field(default_factory=list)

    def publish(self, topic: str, payload: bytes) -> None:
        self.published.append((topic, payload))


class Ticks:
    """A monotonic clock that only the test moves."""

    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def throttled(ctx: Context, rate: float = 10, burst: int = 50) -> tuple[Throttle, RecordingClient]:
    settings = ctx.settings.model_copy(update={"device_rate": rate, "device_burst": burst})
    client = RecordingClient()
    return Throttle(replace(ctx, settings=settings), client, Ticks()), client


def sort_out(
    throttle: Throttle, messages: list[tuple[str, bytes]]
) -> tuple[list[Inbound], list[Inbound]]:
    """What the throttle lets through to the worker's queue and what it refuses, in order."""
    inbound = [Inbound(topic, payload, mid, 1) for mid, (topic, payload) in enumerate(messages, 1)]
    verdicts = [(m, throttle.admit(m.topic, m.payload)) for m in inbound]
    return [m for m, ok in verdicts if ok], [m for m, ok in verdicts if not ok]


def admitted(throttle: Throttle, messages: list[tuple[str, bytes]]) -> list[Inbound]:
    return sort_out(throttle, messages)[0]


def pays(dev: Dev, payee: str, count: int) -> list[dict[str, Any]]:
    return [dev.order(type="pay", payee=payee, amount=1, currency="EUR") for _ in range(count)]


def rows(ctx: Context, table: sa.Table, where: Any = None) -> int:
    query = sa.select(sa.func.count()).select_from(table)
    with ctx.db.read() as conn:
        return int(conn.execute(query if where is None else query.where(where)).scalar_one())


def gateway_verified(ctx: Context, token: bytes) -> dict[str, Any]:
    alg, payload = wire.decode(token)
    wire.verify(token.decode(), alg, ctx.pki.signer.private_key.public_key())
    return payload


def test_a_flood_beyond_the_burst_is_not_decided_and_leaves_no_trace(
    ctx: Context, world: World
) -> None:
    shop, car = world.merchant(), world.device("flooder", top_up=100_000, rules={"currency": "EUR"})
    orders = pays(car, shop["id"], 80)
    throttle, client = throttled(ctx)
    audit_before = rows(ctx, audit_log)
    batch, refused = sort_out(throttle, [(car.topic, car.sign(order)) for order in orders])
    results = world.deliver([(m.topic, m.payload) for m in batch])

    assert [m.mid for m in batch] == list(range(1, 51))
    assert [r["status"] for r in results if "status" in r] == ["approved"] * 50
    assert [m.mid for m in refused] == list(range(51, 81))  # acknowledged at once, not queued
    [(topic, token)] = client.published
    notice = gateway_verified(ctx, token)
    assert topic == f"kym/v1/devices/{car.id}/results"
    assert (notice["status"], notice["reason"]) == ("rejected", "rate_limited")
    assert (notice["order_id"], notice["device_id"]) == (orders[50]["order_id"], car.id)
    assert rows(ctx, order_store.orders, order_store.orders.c.device_id == car.id) == 50
    assert rows(ctx, order_store.outbox) == len(results)  # the notice is not in the outbox
    assert rows(ctx, audit_log) - audit_before == 50  # nor in the audit trail


def test_a_refused_order_sent_again_later_is_decided(ctx: Context, world: World) -> None:
    shop, car = world.merchant(), world.device("again", top_up=100_000, rules={"currency": "EUR"})
    orders = pays(car, shop["id"], 6)
    throttle, client = throttled(ctx, rate=1, burst=5)
    signed = [(car.topic, car.sign(order)) for order in orders]
    assert len(admitted(throttle, signed)) == 5
    assert gateway_verified(ctx, client.published[0][1])["order_id"] == orders[5]["order_id"]

    assert isinstance(throttle.monotonic, Ticks)
    throttle.monotonic.now_s += 1
    [again] = admitted(throttle, signed[5:])
    [result] = world.deliver([(again.topic, again.payload)])
    assert (result["order_id"], result["status"]) == (orders[5]["order_id"], "approved")


def test_one_notice_a_second_naming_null_when_the_first_refused_does_not_decode(
    ctx: Context, world: World
) -> None:
    car = world.device("junk")
    throttle, client = throttled(ctx, rate=1, burst=1)
    junk = [(car.topic, b"junk %d" % n) for n in range(500)]
    passed, refused = sort_out(throttle, junk)
    assert len(passed) == 1
    [(_topic, token)] = client.published
    assert gateway_verified(ctx, token)["order_id"] is None
    assert len(refused) == 499


def test_a_failing_refusal_admits_rather_than_stopping_the_network_thread(
    ctx: Context, world: World
) -> None:
    class Broken(RecordingClient):
        def publish(self, topic: str, payload: bytes) -> None:
            raise RuntimeError("the connection is gone")

    car = world.device("broken")
    settings = ctx.settings.model_copy(update={"device_rate": 1.0, "device_burst": 1})
    throttle = Throttle(replace(ctx, settings=settings), Broken(), Ticks())
    assert len(admitted(throttle, [(car.topic, b"x"), (car.topic, b"y")])) == 2


def test_the_jose_header_holds_only_alg_and_typ(world: World) -> None:
    shop, car = world.merchant(), world.device("jose", rules={"currency": "EUR"})
    key = wire.jose_key(car.key)
    alg = wire.algorithm_for(car.key)

    def signed(header: dict[str, Any]) -> tuple[str, bytes]:
        order = car.order(type="pay", payee=shop["id"], amount=2, currency="EUR")
        body = json.dumps(order).encode()
        return order["order_id"], jws.serialize_compact(header, body, key, [alg]).encode()

    for member, value in [("kid", "k1"), ("jku", "https://evil.example/keys"), ("cty", "JSON")]:
        order_id, token = signed({"alg": alg, member: value})
        result = car.send(token)
        assert (result["order_id"], result["status"], result["reason"]) == (
            order_id,
            "rejected",
            "invalid_signature",
        ), member
    balance = world.balance(car)
    _order_id, token = signed({"alg": alg, "typ": "JOSE"})
    assert car.send(token)["status"] == "approved"
    assert world.balance(car) == balance - 2
