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

from simulators.bench.cpu import CpuMeter
from simulators.bench.load import Load, run_load
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
) -> BenchReport:
    """Start `workers` gateways with `serve_command` (`kym serve`), the first with its broker
    and the others sharing it and the database; run `load` against them; stop them."""
    with tempfile.TemporaryDirectory(prefix="kym-bench-") as tmp:
        home = Path(tmp)
        token = secrets.token_urlsafe(24)
        db_flags = ["--database-url", database_url] if database_url else []
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
            report = run_load(api_url, mqtt, token, load, home / "devices", console, CpuMeter(pids))
            return replace(report, settings=settings_of(load, database_url, broker, workers))


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
