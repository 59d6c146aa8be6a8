"""The service layer on a real database, without a broker: orders go straight to
`payments.check_messages` and `payments.decide_batch`, results come back from the outbox."""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient

from devices import wire
from gateway.orders import decide as payments
from gateway.service import Context
from tests.conftest import ADMIN_TOKEN, make_openssl_csr

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
_ids = itertools.count(1)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class World:
    ctx: Context
    api: TestClient
    tmp: Path
    keyring: payments.KeyRing

    def party(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.api.post(f"/v1/{kind}", json=body, headers=ADMIN)
        assert response.status_code == 201, response.text
        return response.json()

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
        dev = Dev(
            self,
            registered.json()["id"],
            key,
            bearer(owner["api_key"]),  # type: ignore[arg-type]
            bearer(integrator["api_key"]),
        )
        if approve:
            assert (
                self.api.post(f"/v1/devices/{dev.id}/approve", headers=dev.owner).status_code == 200
            )
        if top_up:
            response = self.api.post(
                f"/v1/devices/{dev.id}/wallet/top-ups",
                headers=dev.owner,
                json={"amount": top_up, "currency": "EUR", "idempotency_key": "seed"},
            )
            assert response.status_code == 201, response.text
        if rules is not None:
            assert (
                self.api.put(
                    f"/v1/devices/{dev.id}/rules", json=rules, headers=dev.owner
                ).status_code
                == 200
            )
        return dev

    def deliver(self, messages: list[tuple[str, bytes]]) -> list[dict[str, Any]]:
        """Decide a batch as a worker would; returns every payload put in the outbox."""
        now = self.ctx.clock()
        checked = payments.check_messages(self.ctx, self.keyring, messages, now)
        entries = payments.decide_batch(self.ctx, checked, now) if checked else []
        return [wire.decode(token)[1] for _id, _topic, token in entries]

    def balance(self, dev: Dev) -> int:
        return int(
            self.api.get(f"/v1/devices/{dev.id}/wallet", headers=dev.owner).json()["balance"]
        )


@dataclass
class Dev:
    world: World
    id: str
    key: wire.PrivateKey
    owner: dict[str, str]
    integrator: dict[str, str]

    @property
    def topic(self) -> str:
        return f"kym/v1/devices/{self.id}/orders"

    def order(self, **fields: Any) -> dict[str, Any]:
        return {
            "v": 1,
            "order_id": f"o-{next(_ids)}",
            "device_id": self.id,
            "ts": int(time.time()),
            "nonce": "n",
            **fields,
        }

    def send(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Sign and decide one order; the result for it (events are dropped)."""
        out = self.world.deliver([(self.topic, wire.sign(payload, self.key).encode())])
        [result] = [m for m in out if m.get("device_id") == self.id and "status" in m]
        return result


@pytest.fixture
def world(ctx: Context, api: TestClient, tmp_path: Path) -> World:
    return World(ctx, api, tmp_path, payments.KeyRing())


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()
