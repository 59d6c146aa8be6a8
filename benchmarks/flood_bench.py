"""A flood from one device against everybody else's latency (issue 10, CONTRACT.md section 10).

Starts `kym serve` in a child process with the contract's default per-device limits (10 orders a
second, bursts of 50), provisions `--victims` devices and one flooder through the API, then runs
two phases of the same open-loop load from the victims (each well under its own rate):

- baseline: the load alone;
- flood: the same load while the flooder publishes `--flood` messages (signed, valid orders by
  default; `--junk` for undecodable ones) as fast as its connection takes them, with paho or,
  with `--raw`, as packets encoded up front and written in 64 kB pieces (benchmarks/raw_flood.py:
  a flooder that costs this shared machine little CPU, as one across a network would).

It prints the victims' p50/p99/max latency in both phases, their ratio (the issue asks for a
flood's p99 within 2 × the baseline's), and what the flooder got back (the burst decided, about
one `rate_limited` a second, nothing else). Measures, never asserts:

    .venv/bin/python benchmarks/flood_bench.py                 # Mosquitto when installed
    .venv/bin/python benchmarks/flood_bench.py --broker embedded
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import secrets
import ssl
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
from rich.console import Console

from devices import wire
from devices.contract import orders_topic, results_topic
from devices.sdk import DeviceClient
from simulators.bench.cpu import CpuMeter
from simulators.bench.load import Load, presign, provision_fleet, send, wait_for_results
from simulators.bench.run import served_gateway
from simulators.bench.tally import Tally

sys.path.insert(0, str(Path(__file__).parent))  # run as a script: its sibling module
from raw_flood import RawFlooder  # noqa: E402

SERVE = [sys.executable, "-m", "gateway.cli", "serve"]


@dataclass(frozen=True)
class FloodPlan:
    """What the flooding process needs: the device's identity files, the broker and the flood."""

    device_id: str
    ca_bundle: str
    certificate: str
    key: str
    host: str
    port: int
    messages: list[bytes]
    raw: bool = False


def flood_process(plan: FloodPlan, go: Any, out: Any) -> None:
    """In a process of its own (so that its CPU does not slow the victims' clients): connect as
    the flooder, wait for `go`, publish every message, collect the answers for 3 s more."""
    if plan.raw:
        raw_flood_process(plan, go, out)
        return
    answers: Counter[str] = Counter()

    def on_message(_c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        payload = wire.decode(message.payload)[1]
        answers[f"{payload.get('status')}/{payload.get('reason')}"] += 1

    raw = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=plan.device_id)
    raw.tls_set(plan.ca_bundle, plan.certificate, plan.key, ssl.CERT_REQUIRED)
    raw.max_inflight_messages_set(1000)
    raw.max_queued_messages_set(0)
    raw.on_message = on_message
    disconnects = [0]
    raw.on_disconnect = lambda *a: disconnects.__setitem__(0, disconnects[0] + a[3].is_failure)
    raw.connect(plan.host, plan.port)
    raw.subscribe(results_topic(plan.device_id), qos=1)
    raw.loop_start()
    time.sleep(0.5)  # the SUBACK
    out.put("ready")
    go.wait()
    started = time.perf_counter()
    infos = [raw.publish(orders_topic(plan.device_id), m, qos=1) for m in plan.messages]
    deadline = time.monotonic() + 30  # a broker that disconnects the flooder: paho reconnects,
    for info in infos:  # sends again, and is cut off again; not every message gets its PUBACK
        with contextlib.suppress(RuntimeError, ValueError):  # one paho could not queue
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
    published_s = time.perf_counter() - started
    time.sleep(3)
    raw.disconnect()
    raw.loop_stop()
    answers["acknowledged"] = sum(1 for info in infos if info.is_published())
    answers["disconnected by the broker"] = disconnects[0]
    out.put((published_s, dict(answers)))


def raw_flood_process(plan: FloodPlan, go: Any, out: Any) -> None:
    """`flood_process` with benchmarks/raw_flood.py's flooder."""
    context = ssl.create_default_context(cafile=plan.ca_bundle)
    context.load_cert_chain(plan.certificate, plan.key)
    flooder = RawFlooder(plan.host, plan.port, context, plan.device_id)
    out.put("ready")
    go.wait()
    published_s = flooder.flood(plan.messages, linger_s=3)
    flooder.close()
    answers = dict(flooder.answers) | {"acknowledged": flooder.acked}
    if flooder.disconnected:
        answers["disconnected by the broker"] = 1
    out.put((published_s, answers))


class Flooder:
    """The flooding device in a child process, connected and waiting for the signal."""

    def __init__(self, plan: FloodPlan) -> None:
        spawn = multiprocessing.get_context("spawn")
        self.go, self.out = spawn.Event(), spawn.Queue()
        self.process = spawn.Process(target=flood_process, args=(plan, self.go, self.out))
        self.process.start()
        assert self.out.get(timeout=60) == "ready"
        self.published_s, self.answers = 0.0, dict[str, int]()

    def flood(self) -> None:
        self.go.set()

    def join(self) -> None:
        self.published_s, self.answers = self.out.get(timeout=120)
        self.process.join(10)


def flood_plan(client: DeviceClient, messages: list[bytes]) -> FloodPlan:
    """The flooder's identity and its messages; its SDK connection is closed (the broker
    allows one connection per certificate)."""
    paths = client.identity.paths
    client.close()
    return FloodPlan(
        client.device_id,
        str(paths.ca_bundle),
        str(paths.certificate),
        str(paths.key),
        client.broker_host,
        client.broker_port,
        messages,
    )


class TimedTally(Tally):
    """A Tally that also keeps each first final result's (due, latency), in seconds."""

    def __init__(self) -> None:
        super().__init__()
        self.timed: list[tuple[float, float]] = []
        self._dues: dict[tuple[str, str], float] = {}

    def sent(self, device_id: str, order_id: str, due: float) -> None:
        self._dues[(device_id, order_id)] = due
        super().sent(device_id, order_id, due)

    def result(self, device_id: str, result: Any) -> None:
        due = self._dues.pop((device_id, result.order_id or ""), None)
        if due is not None and result.is_final:
            self.timed.append((due, self.clock() - due))
        super().result(device_id, result)


def timeline(timed: list[tuple[float, float]], started: float) -> list[str]:
    """Latency by half second of the phase: 't+1.5s: 49 orders, p50 5 ms, max 80 ms'."""
    windows: dict[int, list[float]] = {}
    for due, latency_s in timed:
        windows.setdefault(int((due - started) * 2), []).append(latency_s * 1000)
    lines = []
    for window, latencies in sorted(windows.items()):
        latencies.sort()
        p50, worst = latencies[len(latencies) // 2], latencies[-1]
        lines.append(f"t+{window / 2:.1f}s: {len(latencies)}, p50 {p50:.0f} ms, max {worst:.0f} ms")
    return lines


def decision_counts(api: tuple[str, str]) -> dict[str, float]:
    """kym_decision_seconds's cumulative buckets (arrival at the gateway to committed result)."""
    url, token = api
    text = httpx.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"}).text
    counts = {}
    for line in text.splitlines():
        if line.startswith("kym_decision_seconds_bucket{"):
            labels, value = line.rsplit(" ", 1)
            counts[labels.split('le="')[1].split('"')[0]] = float(value)
    return counts


def slow_decisions(before: dict[str, float], after: dict[str, float]) -> dict[str, int]:
    """How many orders of a phase took over 25, 50, 100 and 250 ms inside the gateway."""
    total = after["+Inf"] - before["+Inf"]
    return {
        f">{float(le) * 1000:g}ms": int(total - (after[le] - before[le]))
        for le in ("0.025", "0.05", "0.1", "0.25")
    }


def run_phase(
    victims: list[DeviceClient],
    shop: str,
    args: argparse.Namespace,
    console: Console,
    flooder: Flooder | None,
    meter: CpuMeter,
) -> dict[str, Any]:
    """The victims' open-loop load, with the flood starting a second in when there is one."""
    tally = TimedTally()
    for client in victims:
        client.on_result = partial(tally.result, client.device_id)
    per_device = int(args.rate_per_device * args.seconds)
    orders = presign(victims, shop, per_device)
    decided = decision_counts(args.api)
    meter.start()
    started = time.perf_counter()
    if flooder is not None:
        threading.Timer(1.0, flooder.flood).start()
    send(orders, tally, args.rate_per_device * len(victims))
    wait_for_results(tally, len(orders), console)
    if flooder is not None:
        flooder.join()
    cpu_s = {k: None if v is None else round(v, 2) for k, v in meter.stop().items()}
    in_gateway = slow_decisions(decided, decision_counts(args.api))
    lat = tally.latencies()
    return {
        "orders": len(orders),
        "answered": tally.answered,
        "p50_ms": _round(lat.p50_ms),
        "p99_ms": _round(lat.p99_ms),
        "max_ms": _round(lat.max_ms),
        "statuses": tally.statuses,
        "cpu_s": cpu_s,
        "slow_in_gateway": in_gateway,
        **({"timeline": timeline(tally.timed, started)} if args.timeline else {}),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


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
    parser.add_argument("--rounds", type=int, default=3, help="baseline and flood, alternating")
    parser.add_argument("--junk", action="store_true", help="flood with undecodable messages")
    parser.add_argument("--raw", action="store_true", help="flood with pre-encoded packets")
    parser.add_argument("--timeline", action="store_true", help="latency by half second")
    parser.add_argument("--broker", choices=["auto", "mosquitto", "embedded"], default="auto")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--keep", default=None, help="a directory for the data and logs, kept")
    parser.add_argument("--device-rate", default="10", help="the gateway's (contract default)")
    parser.add_argument("--device-burst", default="50", help="the gateway's (contract default)")
    args = parser.parse_args()
    console = Console(stderr=True)
    limits = ["--device-rate", args.device_rate, "--device-burst", args.device_burst]
    flags = ["--broker", args.broker, *limits]
    if args.database_url:
        flags += ["--database-url", args.database_url]
    with tempfile.TemporaryDirectory(prefix="kym-flood-") as tmp:
        home, token = Path(args.keep or tmp), secrets.token_urlsafe(24)
        with served_gateway(SERVE, home, token, flags, 0, console) as (api_url, broker, pid):
            args.api = (api_url, token)
            clients: list[DeviceClient] = []
            load = Load(devices=args.victims + 1, orders=0)
            shop = provision_fleet(api_url, broker, token, load, home / "d", Tally(), clients)
            *victims, flooding = clients
            floods = [
                flood_messages(flooding, shop, args.flood, args.junk) for _ in range(args.rounds)
            ]
            plan = replace(flood_plan(flooding, []), raw=args.raw)
            try:
                rounds = [
                    run_round(victims, shop, args, console, replace(plan, messages=m), pid)
                    for m in floods
                ]
            finally:
                for client in victims:
                    client.close()
    print(json.dumps(summary(args, rounds), indent=2))


def run_round(
    victims: list[DeviceClient],
    shop: str,
    args: argparse.Namespace,
    console: Console,
    plan: FloodPlan,
    gateway_pid: int,
) -> dict[str, Any]:
    """A baseline phase, then the same load with a flood; the flooder's bucket fills meanwhile."""
    meter = CpuMeter([gateway_pid])
    baseline = run_phase(victims, shop, args, console, None, meter)
    flooder = Flooder(plan)
    try:
        flooded = run_phase(victims, shop, args, console, flooder, meter)
    finally:
        flooder.process.kill()
    ratio = flooded["p99_ms"] / baseline["p99_ms"] if baseline["p99_ms"] else None
    return {
        "baseline": baseline,
        "flooded": flooded,
        "p99_ratio": None if ratio is None else round(ratio, 2),
        "flood_published_s": round(flooder.published_s, 2),
        "flooder_answers": flooder.answers,
    }


def summary(args: argparse.Namespace, rounds: list[dict[str, Any]]) -> dict[str, Any]:
    ratios = sorted(r["p99_ratio"] for r in rounds if r["p99_ratio"] is not None)
    return {
        "broker": args.broker,
        "victims": args.victims,
        "victim_rate_per_s": args.rate_per_device * args.victims,
        "flood": args.flood,
        "flood_kind": "junk" if args.junk else "signed orders",
        "flooder": "raw" if args.raw else "paho",
        "rounds": rounds,
        "median_p99_ratio": ratios[len(ratios) // 2] if ratios else None,
    }


if __name__ == "__main__":
    main()
