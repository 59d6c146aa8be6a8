"""Four gateway processes on PostgreSQL share one orders subscription on a real Mosquitto.

Bursts of orders from one device against a daily limit and a small balance: neither is ever
exceeded, and every order gets exactly one result (re-sent orders get theirs marked duplicate).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from devices import wire
from gateway.broker.mosquitto import ManagedMosquitto
from gateway.context import utcnow
from gateway.http.app import create_app
from gateway.server import build_context, free_port
from gateway.settings import Settings
from tests.e2e.concurrency_helpers import wait_healthy
from tests.e2e.orders import Payer
from tests.support.gateway import ADMIN_TOKEN
from tests.support.services import postgres_schema_url
from tests.support.stack import Stack

pytestmark = [pytest.mark.postgres, pytest.mark.mosquitto, pytest.mark.slow]
PROCESSES = 4


@pytest.fixture
def cluster(tmp_path: Path, postgres_database: str, mosquitto_binary: str) -> Iterator[Stack]:
    url = postgres_schema_url(postgres_database)
    port = free_port()
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=url,
        admin_token=ADMIN_TOKEN,
        broker_url=f"mqtts://127.0.0.1:{port}",
    )
    ctx = build_context(settings)
    with ExitStack() as stack:
        broker = ManagedMosquitto(mosquitto_binary, ctx.pki, "127.0.0.1", port, tmp_path / "mq")
        broker.start(utcnow())
        stack.callback(broker.stop)
        ctx = replace(ctx, broker=broker)
        http_ports = [free_port() for _ in range(PROCESSES)]
        env = {**os.environ, "KYM_ADMIN_TOKEN": ADMIN_TOKEN}
        for index, http_port in enumerate(http_ports):
            log = (tmp_path / f"gateway-{index}.log").open("w")
            stack.callback(log.close)
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "gateway.cli",
                    "serve",
                    "--data-dir",
                    str(settings.data_dir),
                    "--database-url",
                    url,
                    "--broker-url",
                    f"mqtts://127.0.0.1:{port}",
                    "--http",
                    f"127.0.0.1:{http_port}",
                    "--worker-index",
                    str(index),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
            stack.callback(_stop, process)
        for http_port in http_ports:
            wait_healthy(http_port)
        with TestClient(create_app(ctx)) as api:
            yield Stack(ctx, api, port, tmp_path)
        ctx.db.dispose()


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def test_four_workers_never_exceed_limit_or_balance(cluster: Stack) -> None:
    shop = cluster.party("merchants", {"name": "shop", "category": "fuel"})
    device = cluster.device("car")
    owner = {"Authorization": f"Bearer {device.owner_key}"}
    cluster.api.post(
        f"/v1/devices/{device.id}/wallet/top-ups",
        headers=owner,
        json={"amount": 3000, "currency": "EUR", "idempotency_key": "seed"},
    )
    cluster.api.put(
        f"/v1/devices/{device.id}/rules",
        headers=owner,
        json={"currency": "EUR", "limits": [{"period": "day", "amount": 2000}]},
    )
    car = Payer.connect(device)

    first = [car.order(type="pay", payee=shop["id"], amount=100, currency="EUR") for _ in range(60)]
    tokens = [wire.sign(order, car.key).encode() for order in first]
    for token in tokens:
        car.send(token, wait=False)
    for token in tokens[:10]:  # re-sent: each must come back marked duplicate
        car.send(token, wait=False)
    results = _final_results(car, [o["order_id"] for o in first], duplicates=10)
    outcomes = Counter((r["status"], r["reason"]) for r in results.values())
    assert outcomes == {("approved", None): 20, ("declined", "period_limit_exceeded"): 40}

    cluster.api.put(
        f"/v1/devices/{device.id}/rules",
        headers=owner,
        json={"currency": "EUR", "limits": [{"period": "day", "amount": 100_000}]},
    )
    second = [
        car.order(type="pay", payee=shop["id"], amount=100, currency="EUR") for _ in range(30)
    ]
    for order in second:
        car.send(order, wait=False)
    results = _final_results(car, [o["order_id"] for o in second], duplicates=0)
    outcomes = Counter((r["status"], r["reason"]) for r in results.values())
    assert outcomes == {("approved", None): 10, ("declined", "insufficient_funds"): 20}

    wallet = cluster.api.get(f"/v1/devices/{device.id}/wallet", headers=owner).json()
    assert wallet == {"currency": "EUR", "balance": 0, "available": 0}
    from wallet.check import check

    with cluster.ctx.db.read() as conn:
        assert check(conn) == []
    car.close()


def _final_results(car: Payer, order_ids: list[str], duplicates: int) -> dict[str, dict[str, Any]]:
    wanted = set(order_ids)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        messages = [m for m in car.messages() if m.get("order_id") in wanted]
        firsts = [m for m in messages if not m.get("duplicate")]
        repeats = [m for m in messages if m.get("duplicate")]
        if len({m["order_id"] for m in firsts}) == len(wanted) and len(repeats) >= duplicates:
            break
        time.sleep(0.1)
    counts = Counter(m["order_id"] for m in firsts)
    assert set(counts) == wanted, f"missing results for {wanted - set(counts)}"
    assert all(n == 1 for n in counts.values()), "an order got two first results"
    assert len(repeats) == duplicates
    return {m["order_id"]: m for m in firsts}
