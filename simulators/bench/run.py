"""`kym bench` end to end: a gateway in a child process on a temp dir, then the load.

The gateway is started with the command the caller gives (the CLI passes `kym serve`), so
that this package stays a client of the gateway, as the architecture test asks.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from simulators.backoffice import Admin
from simulators.bench.cpu import CpuMeter, children_named
from simulators.bench.idle import (
    IdleDevice,
    IdleFleet,
    broker_rss_kb,
    raise_open_files,
    register_idle,
)
from simulators.bench.load import run_load
from simulators.bench.provision import Load, Parties, make_parties, register_payer
from simulators.bench.report import BenchReport
from simulators.fleet import Broker

HEALTHY_WITHIN_S = 60.0
STOP_WITHIN_S = 15.0
UNLIMITED = 1_000_000


def run_bench(
    serve_command: Sequence[str],
    load: Load,
    console: Console,
    *,
    database_url: str | None = None,
    broker: str = "auto",
    workers: int = 1,
    connected: int = 0,
) -> BenchReport:
    """Start `workers` gateways with `serve_command` (`kym serve`), the first with its broker
    and the others sharing it and the database; run `load` against them; stop them.

    With `connected`, that many idle devices are registered first (by a gateway run with the
    embedded broker, so that Mosquitto's access rules for all of them are written once, at
    its start, from the database) and hold their connections while `load` runs."""
    with tempfile.TemporaryDirectory(prefix="kym-bench-") as tmp:
        home = Path(tmp)
        token = secrets.token_urlsafe(24)
        db_flags = ["--database-url", database_url] if database_url else []
        idle: tuple[list[IdleDevice], Path] | None = None
        parties: Parties | None = None
        idle_numbers: dict[str, Any] = {}
        if connected:
            raise_open_files(connected + 4096)  # before any child: Mosquitto inherits it
            started = time.perf_counter()
            parties, idle_devices, ca_bundle = register_offline(
                serve_command, home, token, db_flags, load, connected, console
            )
            idle = (idle_devices, ca_bundle)
            idle_numbers["idle_register_s"] = round(time.perf_counter() - started, 1)
        with ExitStack() as stack:
            first = stack.enter_context(
                served_gateway(
                    serve_command, home, token, ["--broker", broker, *db_flags], 0, console
                )
            )
            api_url, mqtt, pid = first
            pids = [pid]
            for index in range(1, workers):
                flags = [
                    *db_flags,
                    "--broker-url",
                    f"mqtts://{mqtt.host}:{mqtt.port}",
                    "--worker-index",
                    str(index),
                ]
                pids.append(
                    stack.enter_context(
                        served_gateway(serve_command, home, token, flags, index, console)
                    )[2]
                )
            fleet = IdleFleet(mqtt, *idle) if idle is not None else None
            hold = None
            if fleet is not None:
                stack.callback(fleet.close)

                def hold() -> None:  # once the paying devices are connected
                    assert fleet is not None
                    idle_numbers.update(hold_idle(fleet, pid, console))

            meter = CpuMeter(pids)
            report = run_load(
                api_url, mqtt, token, load, home / "devices", console, meter, parties, hold
            )
            if fleet is not None:
                idle_numbers["idle_still_open"] = fleet.still_open()
            settings = settings_of(load, database_url, broker, workers) | idle_numbers
            return replace(report, settings=settings)


def register_offline(
    serve_command: Sequence[str],
    home: Path,
    token: str,
    db_flags: list[str],
    load: Load,
    count: int,
    console: Console,
) -> tuple[Parties, list[IdleDevice], Path]:
    """Register the paying devices of `load` and `count` idle devices through the API of a
    gateway on the embedded broker (which keeps no per-device broker rules: adding them one
    by one to Mosquitto's rewrites its whole file each time), then stop it; the owner and
    integrator, the idle devices and the CA bundle."""
    flags = ["--broker", "embedded", *db_flags]
    with served_gateway(serve_command, home, token, flags, 99, console) as (api_url, _, _):
        admin = Admin(api_url, token)
        try:
            parties = make_parties(admin)
        finally:
            admin.close()
        with console.status(f"registering {load.devices} + {count} devices"):
            for n in range(load.devices):
                register_payer(api_url, parties, load, home / "devices", n)
            devices, ca_bundle = register_idle(
                api_url, parties.integrator_key, parties.owner_id, count, home / "idle"
            )
        return parties, devices, ca_bundle


def hold_idle(fleet: IdleFleet, gateway_pid: int, console: Console) -> dict[str, Any]:
    """Connect the idle devices; the broker's memory before and after, per connection."""
    brokers = children_named(gateway_pid, "mosquitto")
    broker_pid = brokers[0] if brokers else gateway_pid  # embedded: the gateway is the broker
    before = broker_rss_kb(broker_pid)
    seconds = fleet.connect_all(console)
    time.sleep(2.0)  # let the broker settle its buffers
    after = broker_rss_kb(broker_pid)
    if fleet.failures:
        console.print(f"{len(fleet.failures)} idle devices failed, e.g. {fleet.failures[0]}")
    per = (after - before) / fleet.connected if before and after and fleet.connected else None
    return {
        "connected": fleet.connected,
        "idle_failed": len(fleet.failures),
        "idle_connect_s": round(seconds, 1),
        "broker_process": "mosquitto" if brokers else "gateway (embedded broker)",
        "broker_rss_kb_before": before,
        "broker_rss_kb_after": after,
        "broker_kb_per_connection": None if per is None else round(per, 2),
    }


def settings_of(load: Load, database_url: str | None, broker: str, workers: int) -> dict[str, Any]:
    """What was run, for the JSON line."""
    database = "postgresql" if database_url and database_url.startswith("postgres") else "sqlite"
    return {
        "devices": load.devices,
        "target_rate_per_s": load.rate,  # not "rate": side_by_side.sh reads that as the result
        "database": database,
        "broker": broker,
        "workers": workers,
        "key_type": load.key_type,
    }


@contextmanager
def served_gateway(
    serve_command: Sequence[str],
    home: Path,
    token: str,
    flags: list[str],
    index: int,
    console: Console,
) -> Iterator[tuple[str, Broker, int]]:
    """`serve_command` on free local ports with its data dir in `home`, until healthy: its
    API's URL, its broker and its pid."""
    http_port, mqtt_port = free_port(), free_port()
    command = [
        *serve_command,
        "--data-dir",
        str(home / "data"),
        "--http",
        f"127.0.0.1:{http_port}",
        "--mqtt",
        f"127.0.0.1:{mqtt_port}",
        *flags,
    ]
    # Only what this run sets: a KYM_BROKER_URL in the caller's shell would point it elsewhere.
    env = {k: v for k, v in os.environ.items() if not k.startswith("KYM_")}
    env["KYM_ADMIN_TOKEN"] = token
    # The per-device rate limit still runs, but high: 20 devices sharing thousands of orders a
    # second each send far more than a real device may.
    env["KYM_DEVICE_RATE"] = env["KYM_DEVICE_BURST"] = str(UNLIMITED)
    log_path = home / f"serve-{index}.log"
    with open(log_path, "w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        api_url = f"http://127.0.0.1:{http_port}"
        with console.status(f"starting gateway {index}"):
            wait_healthy(api_url, server, log_path)
        yield api_url, Broker("127.0.0.1", mqtt_port), server.pid
    finally:
        server.terminate()
        server.wait(timeout=STOP_WITHIN_S)


def wait_healthy(api_url: str, server: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + HEALTHY_WITHIN_S
    while time.monotonic() < deadline and server.poll() is None:
        try:
            if httpx.get(f"{api_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    tail = log.read_text()[-2000:]
    raise RuntimeError(f"the gateway did not become healthy; its log ends:\n{tail}")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
