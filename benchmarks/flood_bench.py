"""A flood from one device against everybody else's latency (issue 10, CONTRACT.md section 10).

Starts `kym serve` in a child process with the contract's default per-device limits (10 orders a
second, bursts of 50), provisions `--victims` devices and one flooder through the API, then runs
two phases of the same open-loop load from the victims (each well under its own rate):

- baseline: the load alone;
- flood: the same load while the flooder publishes `--flood` messages (signed, valid orders by
  default; `--junk` for undecodable ones) as fast as its connection takes them.

It prints the victims' p50/p99/max latency in both phases, their ratio (the issue asks for a
flood's p99 within 2 × the baseline's), and what the flooder got back (the burst decided, about
one `rate_limited` a second, nothing else). Measures, never asserts:

    .venv/bin/python benchmarks/flood_bench.py                 # Mosquitto when installed
    .venv/bin/python benchmarks/flood_bench.py --broker embedded
"""

from __future__ import annotations

import argparse
import json
import secrets
import ssl
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from rich.console import Console

from devices import wire
from devices.contract import orders_topic, results_topic
from devices.sdk import DeviceClient
from simulators.bench.load import Load, presign, provision_fleet, send, wait_for_results
from simulators.bench.run import served_gateway
from simulators.bench.tally import Tally

SERVE = [sys.executable, "-m", "gateway.cli", "serve"]
LIMITS = ["--device-rate", "10", "--device-burst", "50"]  # the contract's defaults, explicitly


@dataclass
class Flooder:
    """One device's raw MQTT connection: publishes the flood, counts what comes back."""

    client: DeviceClient
    answers: Counter[str] = field(default_factory=Counter)
    published_s: float = 0.0
    _mqtt: mqtt.Client | None = None

    def connect(self) -> None:
        paths = self.client.identity.paths
        self.client.close()  # one connection per certificate: the broker kicks the older one
        raw = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.client.device_id)
        raw.tls_set(str(paths.ca_bundle), str(paths.certificate), str(paths.key), ssl.CERT_REQUIRED)
        raw.max_inflight_messages_set(1000)
        raw.max_queued_messages_set(0)
        raw.on_message = self._on_message
        raw.connect(self.client.broker_host, self.client.broker_port)
        raw.subscribe(results_topic(self.client.device_id), qos=1)
        raw.loop_start()
        self._mqtt = raw
        time.sleep(0.5)  # the SUBACK

    def flood(self, messages: list[bytes]) -> None:
        assert self._mqtt is not None
        started = time.perf_counter()
        infos = [
            self._mqtt.publish(orders_topic(self.client.device_id), m, qos=1) for m in messages
        ]
        for info in infos:
            info.wait_for_publish(60)
        self.published_s = time.perf_counter() - started

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        payload = wire.decode(message.payload)[1]
        self.answers[f"{payload.get('status')}/{payload.get('reason')}"] += 1

    def close(self) -> None:
        if self._mqtt is not None:
            self._mqtt.disconnect()
            self._mqtt.loop_stop()


def run_phase(
    victims: list[DeviceClient],
    shop: str,
    args: argparse.Namespace,
    console: Console,
    flood: tuple[Flooder, list[bytes]] | None,
) -> dict[str, Any]:
    """The victims' open-loop load, with the flood starting a second in when there is one."""
    tally = Tally()
    for client in victims:
        client.on_result = partial(tally.result, client.device_id)
    per_device = int(args.rate_per_device * args.seconds)
    orders = presign(victims, shop, per_device)
    flooding = None
    if flood is not None:
        flooding = threading.Timer(1.0, flood[0].flood, args=(flood[1],))
        flooding.start()
    send(orders, tally, args.rate_per_device * len(victims))
    wait_for_results(tally, len(orders), console)
    if flooding is not None:
        flooding.join()
    lat = tally.latencies()
    return {
        "orders": len(orders),
        "answered": tally.answered,
        "p50_ms": lat.p50_ms,
        "p99_ms": lat.p99_ms,
        "max_ms": lat.max_ms,
        "statuses": tally.statuses,
    }


def flood_messages(flooder: DeviceClient, shop: str, count: int, junk: bool) -> list[bytes]:
    if junk:
        return [b"junk %d" % n for n in range(count)]
    fields = {"type": "pay", "payee": shop, "amount": 1, "currency": "EUR"}
    return [flooder.prepare(fields).jws.encode() for _ in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--victims", type=int, default=20)
    parser.add_argument("--rate-per-device", type=float, default=5.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--flood", type=int, default=10_000)
    parser.add_argument("--junk", action="store_true", help="flood with undecodable messages")
    parser.add_argument("--broker", choices=["auto", "mosquitto", "embedded"], default="auto")
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    console = Console(stderr=True)
    flags = ["--broker", args.broker, *LIMITS]
    if args.database_url:
        flags += ["--database-url", args.database_url]
    with tempfile.TemporaryDirectory(prefix="kym-flood-") as tmp:
        home, token = Path(tmp), secrets.token_urlsafe(24)
        with served_gateway(SERVE, home, token, flags, 0, console) as (api_url, broker, _pid):
            clients: list[DeviceClient] = []
            load = Load(devices=args.victims + 1, orders=0)
            shop = provision_fleet(api_url, broker, token, load, home / "d", Tally(), clients)
            *victims, flooding_device = clients
            messages = flood_messages(flooding_device, shop, args.flood, args.junk)
            flooder = Flooder(flooding_device)
            flooder.connect()
            try:
                baseline = run_phase(victims, shop, args, console, None)
                flooded = run_phase(victims, shop, args, console, (flooder, messages))
                time.sleep(2)  # the flooder's last answers
            finally:
                flooder.close()
                for client in victims:
                    client.close()
    print_numbers(args, baseline, flooded, flooder)


def print_numbers(
    args: argparse.Namespace, baseline: dict[str, Any], flooded: dict[str, Any], flooder: Flooder
) -> None:
    ratio = flooded["p99_ms"] / baseline["p99_ms"] if baseline["p99_ms"] else None
    summary = {
        "broker": args.broker,
        "victims": args.victims,
        "victim_rate_per_s": args.rate_per_device * args.victims,
        "flood": args.flood,
        "flood_kind": "junk" if args.junk else "signed orders",
        "flood_published_s": round(flooder.published_s, 2),
        "baseline": baseline,
        "flooded": flooded,
        "p99_ratio": None if ratio is None else round(ratio, 2),
        "flooder_answers": dict(flooder.answers),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
