"""`kym bench`: payments per second through a real gateway, broker and database.

Starts `kym serve` in a child process on a temp dir (so the load generator does not share its
interpreter), registers devices, pre-signs every order, then publishes them as fast as the
broker takes them (or at `--rate`) and measures until every result is back.
"""

from __future__ import annotations

import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID
from rich.console import Console
from rich.table import Table

from devices import wire
from gateway.server import free_port

ADMIN_TOKEN = "bench-admin-token"


@dataclass
class BenchDevice:
    id: str
    key: Any
    dir: Path
    client: mqtt.Client | None = None
    sent: dict[str, float] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)
    expected: int = 0
    shop: str = ""


def run_bench(
    devices: int,
    orders: int,
    rate: float | None,
    database_url: str | None,
    broker: str,
    key_type: str,
    console: Console,
) -> dict[str, Any]:
    """Run one benchmark and return its numbers."""
    with tempfile.TemporaryDirectory(prefix="kym-bench-") as tmp:
        data_dir, http, mqtt_port = Path(tmp) / "data", free_port(), free_port()
        command = [
            sys.executable,
            "-m",
            "gateway.cli",
            "serve",
            "--data-dir",
            str(data_dir),
            "--http",
            f"127.0.0.1:{http}",
            "--mqtt",
            f"127.0.0.1:{mqtt_port}",
            "--broker",
            broker,
        ]
        if database_url:
            command += ["--database-url", database_url]
        env = {**os.environ, "KYM_ADMIN_TOKEN": ADMIN_TOKEN}
        with open(Path(tmp) / "serve.log", "w") as log:
            server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            api = f"http://127.0.0.1:{http}"
            _wait_healthy(api, console)
            fleet = _register(api, devices, key_type, Path(tmp), console)
            return _load(api, fleet, mqtt_port, orders, rate, console)
        finally:
            server.terminate()
            server.wait(timeout=15)


def _wait_healthy(api: str, console: Console) -> None:
    with console.status("starting the gateway"):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{api}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
    raise RuntimeError("the gateway did not become healthy; see its log")


def _register(
    api: str, count: int, key_type: str, tmp: Path, console: Console
) -> list[BenchDevice]:
    admin = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    with httpx.Client(base_url=api, timeout=30) as http:
        owner = http.post(
            "/v1/owners", headers=admin, json={"name": "bench", "timezone": "UTC"}
        ).json()
        integrator = http.post("/v1/integrators", headers=admin, json={"name": "bench"}).json()
        shop = http.post(
            "/v1/merchants", headers=admin, json={"name": "shop", "category": "retail"}
        ).json()
        owner_h = {"Authorization": f"Bearer {owner['api_key']}"}
        integrator_h = {"Authorization": f"Bearer {integrator['api_key']}"}
        (tmp / "ca.pem").write_text(http.get("/v1/ca").text)
        fleet = []
        with console.status(f"registering {count} devices"):
            for n in range(count):
                key = (
                    ec.generate_private_key(ec.SECP256R1())
                    if key_type == "p256"
                    else ed25519.Ed25519PrivateKey.generate()
                )
                csr = (
                    x509.CertificateSigningRequestBuilder()
                    .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"b{n}")]))
                    .sign(key, None if key_type == "ed25519" else hashes.SHA256())
                )
                device = http.post(
                    "/v1/devices",
                    headers=integrator_h,
                    json={
                        "owner_id": owner["id"],
                        "kind": "other",
                        "manufacturer": "bench",
                        "model": "b",
                        "serial_number": f"bench-{n}",
                        "csr": csr.public_bytes(serialization.Encoding.PEM).decode(),
                    },
                ).json()
                http.post(f"/v1/devices/{device['id']}/approve", headers=owner_h)
                http.post(
                    f"/v1/devices/{device['id']}/wallet/top-ups",
                    headers=owner_h,
                    json={"amount": 10**9, "currency": "EUR", "idempotency_key": "b"},
                )
                http.put(
                    f"/v1/devices/{device['id']}/rules", headers=owner_h, json={"currency": "EUR"}
                )
                directory = tmp / device["id"]
                directory.mkdir()
                (directory / "cert.pem").write_text(device["certificate"])
                (directory / "key.pem").write_bytes(
                    key.private_bytes(
                        serialization.Encoding.PEM,
                        serialization.PrivateFormat.PKCS8,
                        serialization.NoEncryption(),
                    )
                )
                fleet.append(BenchDevice(device["id"], key, directory))
        for device in fleet:
            device.shop = shop["id"]
    return fleet


def _connect(device: BenchDevice, port: int, ca: Path) -> None:
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device.id)
    client.tls_set(
        ca_certs=str(ca),
        certfile=str(device.dir / "cert.pem"),
        keyfile=str(device.dir / "key.pem"),
        cert_reqs=ssl.CERT_REQUIRED,
    )
    subscribed = threading.Event()

    def on_connect(c: mqtt.Client, *_: Any) -> None:
        sock = c.socket()
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.subscribe(f"kym/v1/devices/{device.id}/results", qos=1)

    def on_message(_c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        _alg, payload = wire.decode(message.payload)
        started = device.sent.pop(payload.get("order_id") or "", None)
        if started is not None:
            device.latencies.append(time.perf_counter() - started)
            status = payload.get("status", "?")
            device.statuses[status] = device.statuses.get(status, 0) + 1
            if len(device.latencies) >= device.expected:
                device.done.set()

    client.on_connect = on_connect
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = on_message
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port)
    client.loop_start()
    if not subscribed.wait(10):
        raise RuntimeError(f"device {device.id} could not subscribe")
    device.client = client


def _load(
    api: str, fleet: list[BenchDevice], port: int, orders: int, rate: float | None, console: Console
) -> dict[str, Any]:
    ca = fleet[0].dir.parent / "ca.pem"
    for device in fleet:
        _connect(device, port, ca)
    per_device = orders // len(fleet)
    signed = []
    now = int(time.time())
    with console.status(f"signing {per_device * len(fleet)} orders"):
        for n in range(per_device):
            for device in fleet:
                order_id = f"b-{n}"
                payload = {
                    "v": 1,
                    "order_id": order_id,
                    "type": "pay",
                    "device_id": device.id,
                    "payee": device.shop,
                    "amount": 1,
                    "currency": "EUR",
                    "ts": now,
                    "nonce": "b",
                }
                signed.append((device, order_id, wire.sign(payload, device.key).encode()))
    for device in fleet:
        device.expected = per_device
    interval = 1.0 / rate if rate else 0.0
    started = time.perf_counter()
    with console.status(f"sending {len(signed)} orders"):
        for index, (device, order_id, token) in enumerate(signed):
            if interval:
                delay = started + index * interval - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            device.sent[order_id] = time.perf_counter()
            assert device.client is not None
            device.client.publish(f"kym/v1/devices/{device.id}/orders", token, qos=1)
    _wait_for_results(fleet, len(signed), console)
    elapsed = time.perf_counter() - started
    for device in fleet:
        assert device.client is not None
        device.client.disconnect()
        device.client.loop_stop()
    latencies = sorted(x for d in fleet for x in d.latencies)
    statuses: dict[str, int] = {}
    for device in fleet:
        for status, count in device.statuses.items():
            statuses[status] = statuses.get(status, 0) + count
    return {
        "orders": len(signed),
        "results": len(latencies),
        "seconds": elapsed,
        "per_second": len(latencies) / elapsed if elapsed else 0.0,
        "p50_ms": _percentile(latencies, 0.50) * 1000,
        "p99_ms": _percentile(latencies, 0.99) * 1000,
        "statuses": statuses,
    }


def _wait_for_results(fleet: list[BenchDevice], expected: int, console: Console) -> None:
    """Until every result is back, or nothing arrived for 30 seconds."""
    last, last_change = -1, time.monotonic()
    with console.status("waiting for results") as status:
        while True:
            got = sum(len(d.latencies) for d in fleet)
            status.update(f"results: {got}/{expected}")
            if got >= expected or time.monotonic() - last_change > 30:
                return
            if got != last:
                last, last_change = got, time.monotonic()
            time.sleep(0.05)


def _percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]


def print_report(numbers: dict[str, Any], label: str, console: Console) -> None:
    """A table of the benchmark's numbers."""
    table = Table(title=f"kym bench: {label}")
    for column in ("orders", "results", "seconds", "payments/s", "p50 ms", "p99 ms", "statuses"):
        table.add_column(column)
    table.add_row(
        str(numbers["orders"]),
        str(numbers["results"]),
        f"{numbers['seconds']:.2f}",
        f"{numbers['per_second']:.0f}",
        f"{numbers['p50_ms']:.1f}",
        f"{numbers['p99_ms']:.1f}",
        str(numbers["statuses"]),
    )
    console.print(table)
