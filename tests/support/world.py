"""A gateway without a broker, driven as its HTTP clients and its MQTT workers drive it.

`World` registers parties and devices over the real HTTP API (in process) and hands signed
orders straight to `gateway.orders.decide.decide_messages`, as a worker would; what it returns
are the payloads put in the outbox. `Clock` is a wall clock that a test can move forward.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient
from sqlalchemy import Engine, event

from devices import wire
from devices.contract import orders_topic
from gateway.context import Context
from gateway.orders.decide import decide_messages
from gateway.orders.intake import KeyRing
from tests.support.gateway import ADMIN_TOKEN
from tests.support.openssl import make_openssl_csr

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
_ids = itertools.count(1)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@contextmanager
def counting_transactions(engine: Engine) -> Iterator[list[object]]:
    """The connections of every transaction begun on `engine` inside the block."""
    begins: list[object] = []

    def count(conn: object) -> None:
        begins.append(conn)

    event.listen(engine, "begin", count)
    try:
        yield begins
    finally:
        event.remove(engine, "begin", count)


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()


class Clock:
    """The wall clock plus an offset that `advance` moves forward."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def __call__(self) -> datetime:
        return datetime.now(UTC) + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += timedelta(seconds=seconds)


@dataclass
class World:
    ctx: Context
    api: TestClient
    tmp: Path
    keyring: KeyRing

    def party(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.api.post(f"/v1/{kind}", json=body, headers=ADMIN)
        assert response.status_code == 201, response.text
        return dict(response.json())

    def merchant(self, category: str = "fuel", currency: str = "EUR") -> dict[str, Any]:
        body = {"name": f"m-{category}", "category": category, "currency": currency}
        return self.party("merchants", body)

    def device(
        self,
        name: str,
        *,
        top_up: int = 10_000,
        rules: dict[str, Any] | None = None,
        category: str | None = None,
        approve: bool = True,
    ) -> Dev:
        owner = self.party("owners", {"name": name, "timezone": "Europe/Berlin"})
        integrator = self.party("integrators", {"name": name})
        key_path, csr = make_openssl_csr(self.tmp, f"{name}-{next(_ids)}")
        body = {
            "owner_id": owner["id"],
            "kind": "car",
            "manufacturer": "ACME",
            "model": "M",
            "serial_number": f"SN-{name}-{next(_ids)}",
            "csr": csr,
            **({"category": category} if category else {}),
        }
        registered = self.api.post("/v1/devices", json=body, headers=bearer(integrator["api_key"]))
        assert registered.status_code == 201, registered.text
        key = serialization.load_pem_private_key(key_path.read_bytes(), None)
        assert isinstance(key, wire.PrivateKey)
        dev = Dev(
            self,
            registered.json()["id"],
            key,
            bearer(owner["api_key"]),
            bearer(integrator["api_key"]),
        )
        if approve:
            assert dev.act("approve").status_code == 200
        if top_up:
            response = self.api.post(
                f"/v1/devices/{dev.id}/wallet/top-ups",
                headers=dev.owner,
                json={"amount": top_up, "currency": "EUR", "idempotency_key": "seed"},
            )
            assert response.status_code == 201, response.text
        if rules is not None:
            dev.put_rules(rules)
        return dev

    def deliver(self, messages: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
        """Decide a batch as a worker would; returns every payload put in the outbox."""
        entries = decide_messages(self.ctx, self.keyring, messages, self.ctx.clock())
        return [wire.decode(token)[1] for _id, _topic, token in entries]

    def balance(self, dev: Dev) -> int:
        return int(dev.wallet()["balance"])


@dataclass
class Dev:
    world: World
    id: str
    key: wire.PrivateKey
    owner: dict[str, str]
    integrator: dict[str, str]

    @property
    def topic(self) -> str:
        return orders_topic(self.id)

    def order(self, **fields: Any) -> dict[str, Any]:
        """An order's payload, stamped with the world's clock."""
        return {
            "v": 1,
            "order_id": f"o-{next(_ids)}",
            "device_id": self.id,
            "ts": int(self.world.ctx.clock().timestamp()),
            "nonce": "n",
            **fields,
        }

    def sign(self, payload: dict[str, Any], key: wire.PrivateKey | None = None) -> bytes:
        return wire.sign(payload, key or self.key).encode()

    def send(self, payload: dict[str, Any] | bytes) -> dict[str, Any]:
        """Sign (unless raw bytes) and decide one message; its result (events are dropped)."""
        return self.send_all(payload)[0]

    def send_all(self, payload: dict[str, Any] | bytes) -> list[dict[str, Any]]:
        """Every result for this device that deciding one message put in the outbox."""
        raw = payload if isinstance(payload, bytes) else self.sign(payload)
        out = self.world.deliver([(self.topic, raw)])
        results = [m for m in out if m.get("device_id") == self.id and "status" in m]
        assert results, out
        return results

    def pay(self, payee: str, amount: int, **extra: Any) -> tuple[str, str | None]:
        """(status, reason) of a `pay` in EUR."""
        result = self.send(
            self.order(type="pay", payee=payee, amount=amount, currency="EUR", **extra)
        )
        return result["status"], result["reason"]

    def act(self, action: str) -> Any:
        return self.world.api.post(f"/v1/devices/{self.id}/{action}", headers=self.owner)

    def put_rules(self, rules: dict[str, Any]) -> None:
        response = self.world.api.put(
            f"/v1/devices/{self.id}/rules", json=rules, headers=self.owner
        )
        assert response.status_code == 200, response.text

    def wallet(self) -> dict[str, Any]:
        response = self.world.api.get(f"/v1/devices/{self.id}/wallet", headers=self.owner)
        assert response.status_code == 200, response.text
        return dict(response.json())
