"""The floor pipeline's latency at a fixed offered rate (open loop), beside `kym bench --rate`.

`../shared/bench/e2e_bench.py` (the floor) only runs closed loop, with 200 orders outstanding:
its p99 then says how long the window is, not how fast an order goes through. This runs the
floor's own gateway (imported from that file, unchanged: paho in, Ed25519 check, one conditional
UPDATE and one INSERT committed in groups of up to 100, a QoS 1 reply) and offers it orders at
`--rate` per second on a schedule, whatever it answers, timing each from when it was due to
when its reply arrived: the same measure as `kym bench --rate`'s p99.

Start a Mosquitto the way `side_by_side.sh` does (its `mosquitto.conf`, mutual TLS on 18831),
then, from the project's root:

    python benchmarks/floor_open_loop.py --tls --port 18831 --rate 700 --seconds 10

It prints one JSON line: offered and answered rates, p50, p95, p99, max, CPU seconds of the
floor's gateway process.
"""

from __future__ import annotations

import argparse
import importlib
import json
import multiprocessing as mp
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

FLOOR_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "bench"


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p / 100))] if ordered else 0.0


def presigned(
    keys: dict[str, ed25519.Ed25519PrivateKey], count: int
) -> list[tuple[str, str, bytes]]:
    """The floor's own order format, signed before the clock starts."""
    devices = list(keys)
    orders = []
    for i in range(count):
        device, order_id = devices[i % len(devices)], str(uuid.uuid4())
        body = orjson.dumps(
            {
                "order_id": order_id,
                "device": device,
                "payee": "merchant-1",
                "amount": 1 + i % 1000,
                "ts": time.time(),
                "nonce": i,
            }
        ).decode()
        signature = keys[device].sign(body.encode()).hex()
        orders.append((device, order_id, orjson.dumps({"o": body, "s": signature})))
    return orders


def offer(
    floor: Any, args: argparse.Namespace, orders: list[tuple[str, str, bytes]]
) -> dict[str, Any]:
    """Publish every order at its due time (open loop) and time its reply from then."""
    due: dict[str, float] = {}
    latencies: list[float] = []
    lock = threading.Lock()
    client = floor.client(args, "open-loop")

    def on_message(_c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        now = time.perf_counter()
        order_id = orjson.loads(message.payload)["order_id"]
        with lock:
            sent = due.pop(order_id, None)
            if sent is not None:
                latencies.append((now - sent) * 1000)

    client.on_message = on_message
    floor.connect(client, args, "pay/+/res")
    started = time.perf_counter()
    for index, (device, order_id, payload) in enumerate(orders):
        slot = started + index / args.rate
        wait = slot - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        with lock:
            due[order_id] = slot
        client.publish(f"pay/{device}/req", payload, qos=1)
    sent_s = time.perf_counter() - started
    deadline = time.perf_counter() + 10
    while due and time.perf_counter() < deadline:
        time.sleep(0.05)
    client.loop_stop()
    return {
        "offered_per_s": round(len(orders) / sent_s, 1),
        "orders": len(orders),
        "answered": len(latencies),
        "p50_ms": round(percentile(latencies, 50), 3),
        "p95_ms": round(percentile(latencies, 95), 3),
        "p99_ms": round(percentile(latencies, 99), 3),
        "max_ms": round(max(latencies, default=0.0), 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rate", type=float, required=True, help="orders per second offered")
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--devices", type=int, default=20)
    ap.add_argument("--port", type=int, default=18831)
    ap.add_argument("--tls", action="store_true")
    ap.add_argument("--pki", default="/tmp/bench_pki")
    ap.add_argument("--db", default="sqlite:////tmp/e2e_open_loop.db")
    ap.add_argument("--sync", default="NORMAL")
    ap.add_argument("--floor-dir", type=Path, default=FLOOR_DIR)
    args = ap.parse_args()
    args.commit, args.batch = "group", 100  # what side_by_side.sh runs the floor with
    sys.path.insert(0, str(args.floor_dir))
    floor = importlib.import_module("e2e_bench")
    keys = {f"dev{i:05d}": ed25519.Ed25519PrivateKey.generate() for i in range(args.devices)}
    public = {
        device: key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw
        )
        for device, key in keys.items()
    }
    orders = presigned(keys, int(args.rate * args.seconds))
    context = mp.get_context("fork")
    ready, stop, out = context.Event(), context.Event(), context.Queue()
    gateway = context.Process(target=floor.gateway, args=(args, public, ready, stop, out))
    gateway.start()
    if not ready.wait(30):
        sys.exit("the floor's gateway did not start")
    cpu_before = floor.proc_cpu_s(gateway.pid)
    result = offer(floor, args, orders)
    result["cpu_s"] = {"gateway": round(floor.proc_cpu_s(gateway.pid) - cpu_before, 2)}
    stop.set()
    result["gateway_stats"] = out.get(timeout=30)
    gateway.join(10)
    print(json.dumps({"floor_open_loop": True, "rate": args.rate, **result}))


if __name__ == "__main__":
    main()
