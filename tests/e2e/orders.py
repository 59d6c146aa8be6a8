"""A test device that signs orders and waits for the gateway's signed results."""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from devices import wire
from devices.contract import orders_topic, results_topic
from tests.support.stack import Device, Session, Stack

_ids = itertools.count(1)


@dataclass
class Payer:
    device: Device
    session: Session
    key: wire.PrivateKey
    gateway_key: wire.PublicKey

    @classmethod
    def connect(cls, device: Device) -> Payer:
        key = serialization.load_pem_private_key(device.key.read_bytes(), None)
        assert isinstance(key, wire.PrivateKey)
        signer = x509.load_pem_x509_certificate(device.stack.api.get("/v1/ca/gateway").content)
        session = device.connect()
        assert session.is_up
        session.subscribe(results_topic(device.id))
        return cls(device, session, key, signer.public_key())  # type: ignore[arg-type]

    @property
    def id(self) -> str:
        return self.device.id

    def order(self, **fields: Any) -> dict[str, Any]:
        return {
            "v": 1,
            "order_id": f"o-{next(_ids)}",
            "device_id": self.id,
            "ts": int(time.time()),
            "nonce": "n1",
            **fields,
        }

    def send(
        self,
        payload: dict[str, Any] | bytes,
        *,
        key: wire.PrivateKey | None = None,
        wait: bool = True,
        order_id: str | None = None,
    ) -> dict[str, Any] | None:
        raw = (
            payload if isinstance(payload, bytes) else wire.sign(payload, key or self.key).encode()
        )
        start = len(self.session.messages)
        self.session.publish(orders_topic(self.id), raw)
        if not wait:
            return None
        wanted = (
            order_id
            if order_id is not None
            else (payload.get("order_id") if isinstance(payload, dict) else None)
        )
        return self.result_for(wanted, after=start)

    def messages(self, after: int = 0) -> list[dict[str, Any]]:
        """Every result and event so far, signature-checked against the gateway's certificate."""
        out = []
        for _topic, raw in list(self.session.messages)[after:]:
            alg, payload = wire.decode(raw)
            wire.verify(raw.decode(), alg, self.gateway_key)
            out.append(payload)
        return out

    def result_for(
        self,
        order_id: str | None,
        status: str | None = None,
        timeout_s: float = 10.0,
        after: int = 0,
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for message in self.messages(after):
                if (
                    "status" in message
                    and message["order_id"] == order_id
                    and (status is None or message["status"] == status)
                ):
                    return message
            time.sleep(0.01)
        raise AssertionError(f"no result for {order_id} ({status}); got {self.messages()}")

    def events(self, name: str) -> list[dict[str, Any]]:
        return [m for m in self.messages() if m.get("event") == name]

    def close(self) -> None:
        self.session.close()


def setup_payer(
    stack: Stack,
    name: str,
    *,
    top_up: int = 10_000,
    rules: dict[str, Any] | None = None,
    category: str | None = None,
) -> Payer:
    device = stack.device(name)
    owner = {"Authorization": f"Bearer {device.owner_key}"}
    if top_up:
        response = stack.api.post(
            f"/v1/devices/{device.id}/wallet/top-ups",
            headers=owner,
            json={"amount": top_up, "currency": "EUR", "idempotency_key": f"seed-{device.id}"},
        )
        assert response.status_code == 201, response.text
    if rules is not None:
        response = stack.api.put(f"/v1/devices/{device.id}/rules", json=rules, headers=owner)
        assert response.status_code == 200, response.text
    return Payer.connect(device)


def dumps(value: Any) -> bytes:
    return json.dumps(value).encode()
