"""`kym serve` and `kym mosquitto-config` as a user runs them: real processes, real Mosquitto."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import paho.mqtt.client as mqtt
import pytest
from cryptography.hazmat.primitives import serialization

from devices import wire
from tests.broker.rawmqtt import RawClient
from tests.conftest import make_openssl_csr
from tests.e2e.concurrency_helpers import wait_healthy
from tests.e2e.conftest import free_port

pytestmark = pytest.mark.mosquitto
TOKEN = "serve-test-token"


def kym(log: Path, *args: str) -> subprocess.Popen[bytes]:
    """Start `kym ARGS` with its output in `log` (a pipe nobody reads would fill and block)."""
    env = {**os.environ, "KYM_ADMIN_TOKEN": TOKEN}
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", *args],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_serve_stops_within_ten_seconds_and_stops_its_broker(
    tmp_path: Path, mosquitto_binary: str
) -> None:
    http, port = free_port(), free_port()
    process = kym(
        tmp_path / "serve.log",
        "serve",
        "--data-dir",
        str(tmp_path / "d"),
        "--http",
        f"127.0.0.1:{http}",
        "--mqtt",
        f"127.0.0.1:{port}",
    )
    try:
        wait_healthy(http)
        conf = str(tmp_path / "d" / "mosquitto" / "mosquitto.conf")
        assert subprocess.run(["pgrep", "-f", conf], capture_output=True).returncode == 0
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
        assert time.monotonic() - started < 10
        assert subprocess.run(["pgrep", "-f", conf], capture_output=True).returncode != 0
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def external(tmp_path: Path, mosquitto_binary: str) -> Iterator[tuple[int, int, Path]]:
    """`kym mosquitto-config` output run by `mosquitto -c`, and `kym serve --broker-url`."""
    data, out, port, http = tmp_path / "d", tmp_path / "mq", free_port(), free_port()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "mosquitto-config",
            "--data-dir",
            str(data),
            "--listen",
            f"127.0.0.1:{port}",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    conf = (out / "mosquitto.conf").read_text()
    for needed in (
        "require_certificate true",
        "use_identity_as_username true",
        "use_username_as_clientid true",
        "crlfile /",
        "allow_anonymous false",
        "plugin /",
        "persistence true",
    ):
        assert needed in conf
    assert '"subscribe": false' in (out / "dynsec.json").read_text()
    broker = subprocess.Popen(
        [mosquitto_binary, "-c", str(out / "mosquitto.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    gateway = kym(
        tmp_path / "serve.log",
        "serve",
        "--data-dir",
        str(data),
        "--broker-url",
        f"mqtts://127.0.0.1:{port}",
        "--http",
        f"127.0.0.1:{http}",
    )
    try:
        wait_healthy(http)
        yield port, http, data
    finally:
        for process in (gateway, broker):
            process.terminate()
            process.wait(timeout=15)


def test_device_pays_through_an_external_mosquitto(
    external: tuple[int, int, Path], tmp_path: Path
) -> None:
    port, http, data = external
    api = httpx.Client(base_url=f"http://127.0.0.1:{http}", timeout=10)
    admin = {"Authorization": f"Bearer {TOKEN}"}
    owner = api.post("/v1/owners", json={"name": "Ada", "timezone": "UTC"}, headers=admin).json()
    integrator = api.post("/v1/integrators", json={"name": "ACME"}, headers=admin).json()
    shop = api.post("/v1/merchants", json={"name": "s", "category": "fuel"}, headers=admin).json()
    key_path, csr = make_openssl_csr(tmp_path, "car")
    device = api.post(
        "/v1/devices",
        headers={"Authorization": f"Bearer {integrator['api_key']}"},
        json={
            "owner_id": owner["id"],
            "kind": "car",
            "manufacturer": "A",
            "model": "B",
            "serial_number": "1",
            "csr": csr,
        },
    ).json()
    owner_h = {"Authorization": f"Bearer {owner['api_key']}"}
    api.post(f"/v1/devices/{device['id']}/approve", headers=owner_h)
    api.post(
        f"/v1/devices/{device['id']}/wallet/top-ups",
        headers=owner_h,
        json={"amount": 500, "currency": "EUR", "idempotency_key": "k"},
    )
    api.put(f"/v1/devices/{device['id']}/rules", headers=owner_h, json={"currency": "EUR"})
    (tmp_path / "car.crt").write_text(device["certificate"])
    (tmp_path / "ca.pem").write_text(api.get("/v1/ca").text)
    results: list[dict[str, object]] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=device["id"])
    client.tls_set(
        ca_certs=str(tmp_path / "ca.pem"), certfile=str(tmp_path / "car.crt"), keyfile=str(key_path)
    )
    client.on_message = lambda _c, _u, m: results.append(wire.decode(m.payload)[1])
    ended = threading.Event()
    client.on_disconnect = lambda *_: ended.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    client.subscribe(f"kym/v1/devices/{device['id']}/results", qos=1)
    time.sleep(0.5)
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)

    def pay(order_id: str) -> dict[str, object]:
        order = {
            "v": 1,
            "order_id": order_id,
            "type": "pay",
            "device_id": device["id"],
            "payee": shop["id"],
            "amount": 100,
            "currency": "EUR",
            "ts": int(time.time()),
            "nonce": "n",
        }
        client.publish(f"kym/v1/devices/{device['id']}/orders", wire.sign(order, key), qos=1)  # type: ignore[arg-type]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = [r for r in results if r.get("order_id") == order_id]
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f"no result for {order_id}")

    assert pay("o-1")["status"] == "approved"
    api.post(f"/v1/devices/{device['id']}/revoke", headers=owner_h)
    # the gateway deleted the device's dynsec entry: its session ends, and although the
    # operator has not reloaded the CRL yet, the certificate may do nothing any more
    assert ended.wait(5), "the revoked device's session survived"
    client.loop_stop()
    tls = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    tls.load_cert_chain(tmp_path / "car.crt", key_path)
    again = RawClient(port, tls)
    assert again.connect(client_id=device["id"]) == (False, 0)
    assert again.subscribe(1, f"kym/v1/devices/{device['id']}/results") == [0x80]
    again.close()
    api.close()
    audit = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "audit", "verify", "--data-dir", str(data)],
        capture_output=True,
        text=True,
    )
    assert audit.returncode == 0, audit.stderr
    ledger = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "ledger", "check", "--data-dir", str(data)],
        capture_output=True,
        text=True,
    )
    assert ledger.returncode == 0, ledger.stderr
