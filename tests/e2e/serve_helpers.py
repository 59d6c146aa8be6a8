"""What the `kym serve` tests do as a user would: start `kym` processes, register a car over
HTTP, and pay with it over MQTT with its own certificate."""

from __future__ import annotations

import os
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives import serialization

from devices import wire
from tests.support.openssl import make_openssl_csr

TOKEN = "serve-test-token"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def kym(log: Path, *args: str) -> subprocess.Popen[bytes]:
    """Start `kym ARGS` with its output in `log` (a pipe nobody reads would fill and block)."""
    env = {**os.environ, "KYM_ADMIN_TOKEN": TOKEN}
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def serve(tmp_path: Path, data: Path, http: int, mqtt_port: int) -> subprocess.Popen[bytes]:
    """`kym serve` with its managed broker on `mqtt_port`."""
    return kym(
        tmp_path / "serve.log",
        "serve",
        "--data-dir",
        str(data),
        "--http",
        f"127.0.0.1:{http}",
        "--mqtt",
        f"127.0.0.1:{mqtt_port}",
    )


def healthz(http: int) -> int | None:
    """The status of GET /healthz, None when nothing answers."""
    try:
        return httpx.get(f"http://127.0.0.1:{http}/healthz", timeout=1).status_code
    except httpx.HTTPError:
        return None


class Car:
    """A car registered over HTTP (openssl key and CSR), approved, funded, with rules set."""

    def __init__(self, http: int, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.api = httpx.Client(base_url=f"http://127.0.0.1:{http}", timeout=10)
        owner = self._post("/v1/owners", {"name": "Ada", "timezone": "UTC"}, ADMIN)
        integrator = self._post("/v1/integrators", {"name": "ACME"}, ADMIN)
        self.shop = self._post("/v1/merchants", {"name": "s", "category": "fuel"}, ADMIN)["id"]
        self.key_path, csr = make_openssl_csr(tmp_path, "car")
        body = {
            "owner_id": owner["id"],
            "kind": "car",
            "manufacturer": "A",
            "model": "B",
            "serial_number": "1",
            "csr": csr,
        }
        device = self._post(
            "/v1/devices", body, {"Authorization": f"Bearer {integrator['api_key']}"}
        )
        self.id = device["id"]
        self.owner = {"Authorization": f"Bearer {owner['api_key']}"}
        self._post(f"/v1/devices/{self.id}/approve", {}, self.owner, 200)
        top_up = {"amount": 5000, "currency": "EUR", "idempotency_key": "k"}
        self._post(f"/v1/devices/{self.id}/wallet/top-ups", top_up, self.owner)
        self.api.put(f"/v1/devices/{self.id}/rules", headers=self.owner, json={"currency": "EUR"})
        self.cert_path = tmp_path / "car.crt"
        self.cert_path.write_text(device["certificate"])
        self.ca_path = tmp_path / "ca.pem"
        self.ca_path.write_text(self.api.get("/v1/ca").text)
        self.key = serialization.load_pem_private_key(self.key_path.read_bytes(), None)
        self.results: list[dict[str, Any]] = []
        self.ended = threading.Event()
        self.client: mqtt.Client | None = None

    def _post(
        self, path: str, body: dict[str, Any], headers: dict[str, str], status: int = 201
    ) -> Any:
        response = self.api.post(path, json=body, headers=headers)
        assert response.status_code == status, response.text
        return response.json()

    def revoke(self) -> None:
        self._post(f"/v1/devices/{self.id}/revoke", {}, self.owner, 200)

    def tls(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_path))
        context.load_cert_chain(self.cert_path, self.key_path)
        return context

    def connect(self, port: int) -> None:
        """Connect with paho, which reconnects by itself and subscribes again each time."""
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.id)
        client.tls_set(
            ca_certs=str(self.ca_path), certfile=str(self.cert_path), keyfile=str(self.key_path)
        )
        client.reconnect_delay_set(0.1, 1)
        client.on_message = lambda _c, _u, m: self.results.append(wire.decode(m.payload)[1])
        client.on_connect = lambda c, *_: c.subscribe(f"kym/v1/devices/{self.id}/results", 1)
        client.on_disconnect = lambda *_: self.ended.set()
        client.connect("127.0.0.1", port)
        client.loop_start()
        self.client = client
        time.sleep(0.5)

    def pay(self, order_id: str, timeout_s: float = 10) -> dict[str, Any]:
        """Publish a pay order (again every 2 s, as the SDK does) until its result comes."""
        order = {
            "v": 1,
            "order_id": order_id,
            "type": "pay",
            "device_id": self.id,
            "payee": self.shop,
            "amount": 100,
            "currency": "EUR",
            "ts": int(time.time()),
            "nonce": "n",
        }
        jws = wire.sign(order, self.key)  # type: ignore[arg-type]
        assert self.client is not None
        deadline, sent_at = time.monotonic() + timeout_s, 0.0
        while time.monotonic() < deadline:
            found = [r for r in self.results if r.get("order_id") == order_id]
            if found:
                return found[0]
            if time.monotonic() - sent_at > 2:
                self.client.publish(f"kym/v1/devices/{self.id}/orders", jws, qos=1)
                sent_at = time.monotonic()
            time.sleep(0.05)
        raise AssertionError(f"no result for {order_id}")

    def disconnect(self) -> None:
        """End the MQTT connection (the HTTP client stays)."""
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None
        self.ended.clear()

    def close(self) -> None:
        self.disconnect()
        self.api.close()
