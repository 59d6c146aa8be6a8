"""CPU per payment of the decision alone (`decide_messages`), by batch size, without a broker.

The numbers `kym bench` gives depend on how busy the machine is; CPU time spent in one thread
does much less, so this is the figure to compare before and after a change to the order path.
It builds a gateway context on a fresh data dir (SQLite, or `--database-url`), registers
devices through the API in process (the service tests' `World`), signs every order first and
then decides them in batches of 1, 10 and 100, as a worker would.

usage: .venv/bin/python benchmarks/decide_bench.py [--devices 20] [--orders 2000] [--repeat 3]
       [--sizes 1,10,100] [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/kym_decide]
"""

from __future__ import annotations

import argparse
import base64
import json
import tempfile
import time
from pathlib import Path

from fastapi.testclient import TestClient

from gateway.http.app import create_app
from gateway.orders.decide import decide_messages
from gateway.orders.intake import KeyRing
from gateway.server import build_context
from gateway.settings import Settings
from tests.support.gateway import ADMIN_TOKEN
from tests.support.world import World


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
