"""CPU per payment of the decision alone (`decide_messages`), by batch size, without a broker.

The numbers `kym bench` gives depend on how busy the machine is; CPU time spent in one thread
does much less, so this is the figure to compare before and after a change to the order path.
It builds a gateway context on a fresh data dir (SQLite, or `--database-url`), registers
devices through the API in process (the service tests' `World`), signs every order first and
then decides them in batches of 1, 10 and 100, as a worker would.

usage: .venv/bin/python benchmarks/decide_bench.py [--devices 20] [--orders 2000] [--repeat 3]
       [--sizes 1,10,100] [--history 50000]
       [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/kym_decide]
"""

from __future__ import annotations

import argparse
import base64
import json
import secrets
import tempfile
import time
from functools import partial
from pathlib import Path

from fastapi.testclient import TestClient

from gateway.http.app import create_app
from gateway.orders import store as order_store
from gateway.orders.decide import decide_messages
from gateway.orders.intake import KeyRing
from gateway.server import build_context
from gateway.settings import Settings
from tests.support.gateway import ADMIN_TOKEN
from tests.support.world import World
from wallet.prepared import insert_many


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=20)
    parser.add_argument("--orders", type=int, default=2000, help="per batch size")
    parser.add_argument("--database-url", default=None)
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of every size; the least CPU is printed"
    )
    parser.add_argument(
        "--sizes", default="1,10,100", help="batch sizes, comma-separated (default 1,10,100)"
    )
    parser.add_argument(
        "--history",
        type=int,
        default=0,
        help="orders each device sent before (rows written straight into `orders`)",
    )
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    with tempfile.TemporaryDirectory(prefix="kym-decide-") as tmp:
        settings = Settings(
            data_dir=Path(tmp) / "data", database_url=args.database_url, admin_token=ADMIN_TOKEN
        )
        ctx = build_context(settings)
        try:
            with TestClient(create_app(ctx)) as api:
                world = World(ctx, api, Path(tmp), KeyRing())
                shop = world.merchant("retail")["id"]
                devices = [
                    world.device(f"d{n}", top_up=10**9, rules={"currency": "EUR"})
                    for n in range(args.devices)
                ]
                pay = {"type": "pay", "payee": shop, "amount": 1, "currency": "EUR"}
                remember_history(world, [dev.id for dev in devices], args.history)
                best: dict[int, dict[str, float]] = {}
                for _ in range(args.repeat):  # rounds interleave the sizes: load drifts
                    for size in sizes:
                        orders = [
                            (dev.topic, dev.sign(dev.order(**pay)))
                            for _ in range(args.orders // len(devices))
                            for dev in devices
                        ]
                        found = measure(world, orders, size)
                        if (
                            size not in best
                            or found["cpu_us_per_payment"] < best[size]["cpu_us_per_payment"]
                        ):
                            best[size] = found
                for size, found in best.items():
                    print(json.dumps({"batch": size, **found}))
        finally:
            ctx.db.dispose()


def remember_history(world: World, device_ids: list[str], per_device: int) -> None:
    """`per_device` decided orders for each device, as if sent before (a long history: the
    lookup of a batch's replays must not read it)."""
    now = world.ctx.clock()
    result = '{"status":"approved","reason":null}'
    for device_id in device_ids:
        for start in range(0, per_device, 10_000):
            rows = [
                {
                    "device_id": device_id,
                    "order_id": f"old-{n}-{secrets.token_hex(5)}",
                    "payload_sha256": "0" * 64,
                    "type": "pay",
                    "status": "approved",
                    "payment_id": None,
                    "result_json": result,
                    "received_at": now,
                    "updated_at": now,
                    "jws": None,
                }
                for n in range(start, min(per_device, start + 10_000))
            ]
            world.ctx.db.run(partial(insert_many, table=order_store.orders, rows=rows))
    if per_device and not world.ctx.db.is_sqlite:
        with world.ctx.db.engine.begin() as conn:  # committed: fresh planner statistics
            conn.exec_driver_sql("ANALYZE orders")


def token_payload(token: str) -> str:
    """A result JWS's payload as JSON text (to see that every order was approved)."""
    segment = token.split(".")[1]
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)).decode()


def measure(world: World, orders: list[tuple[str, bytes]], size: int) -> dict[str, float]:
    """Decide `orders` in batches of `size`: CPU and wall microseconds per payment."""
    cpu, wall = time.thread_time(), time.perf_counter()
    for start in range(0, len(orders), size):
        batch = orders[start : start + size]
        decided = decide_messages(world.ctx, world.keyring, batch, world.ctx.clock())
        assert len(decided) == len(batch)
        assert all('"status":"approved"' in token_payload(t) for _, _, t in decided), decided[0]
    cpu, wall = time.thread_time() - cpu, time.perf_counter() - wall
    return {
        "orders": len(orders),
        "cpu_us_per_payment": round(cpu / len(orders) * 1e6),
        "wall_us_per_payment": round(wall / len(orders) * 1e6),
    }


if __name__ == "__main__":
    main()
