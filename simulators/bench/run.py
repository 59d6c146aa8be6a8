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
from contextlib import contextmanager
from pathlib import Path

import httpx
from rich.console import Console

from simulators.bench.load import Load, run_load
from simulators.bench.report import BenchReport
from simulators.fleet import Broker

HEALTHY_WITHIN_S = 60.0
STOP_WITHIN_S = 15.0


def run_bench(
    serve_command: Sequence[str],
    load: Load,
    console: Console,
    *,
    database_url: str | None = None,
    broker: str = "auto",
) -> BenchReport:
    """Start a gateway with `serve_command` (`kym serve`), run `load` against it, stop it."""
    with tempfile.TemporaryDirectory(prefix="kym-bench-") as tmp:
        home = Path(tmp)
        token = secrets.token_urlsafe(24)
        flags = ["--broker", broker] + (["--database-url", database_url] if database_url else [])
        with served_gateway(serve_command, home, token, flags, console) as (api_url, mqtt):
            return run_load(api_url, mqtt, token, load, home / "devices", console)


@contextmanager
def served_gateway(
    serve_command: Sequence[str], home: Path, token: str, flags: list[str], console: Console
) -> Iterator[tuple[str, Broker]]:
    """`serve_command` on free local ports with its data dir in `home`, until healthy."""
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
    with open(home / "serve.log", "w") as log:
        server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        api_url = f"http://127.0.0.1:{http_port}"
        with console.status("starting the gateway"):
            wait_healthy(api_url, server, home / "serve.log")
        yield api_url, Broker("127.0.0.1", mqtt_port)
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
