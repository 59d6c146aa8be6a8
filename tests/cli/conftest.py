"""`kym` as a person runs it: real processes, a real `kym serve`, the output read back."""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.cli import BIN, Served, clean_env
from tests.support.services import unavailable


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(params=["embedded", "mosquitto"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Served]:
    """`kym serve` on free ports, on each broker, until the test ends."""
    broker = str(request.param)
    if broker == "mosquitto":
        request.getfixturevalue("mosquitto_binary")
    for tool in ("jq", "openssl", "mosquitto_rr", "curl"):
        if shutil.which(tool) is None:
            unavailable(f"the {tool} command")
    served = Served(tmp_path, free_port(), free_port())
    command = [
        str(BIN / "kym"),
        "serve",
        "--data-dir",
        "./kym-data",
        "--http",
        f"127.0.0.1:{served.http_port}",
        "--mqtt",
        f"127.0.0.1:{served.mqtt_port}",
        "--broker",
        broker,
    ]
    with open(tmp_path / "serve.log", "w") as log:
        process = subprocess.Popen(
            command, cwd=tmp_path, env=clean_env(), stdout=log, stderr=subprocess.STDOUT
        )
    try:
        wait_healthy(served.api_url, process, tmp_path / "serve.log")
        yield served
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)


def wait_healthy(api_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{api_url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    pytest.fail(f"kym serve did not become healthy:\n{log.read_text()[-3000:]}")
