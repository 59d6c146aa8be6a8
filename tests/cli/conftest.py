"""`kym` as a person runs it: real processes, a real `kym serve`, the output read back."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.conftest import unavailable

BIN = Path(sys.executable).parent  # where `kym` is installed beside this interpreter


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a fresh shell: no KYM_* variable from ours, `kym` on the PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KYM_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


def kym(
    *args: str, cwd: Path | None = None, timeout_s: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "kym"), *args],
        cwd=cwd,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Served:
    """A `kym serve` started in `home` with `--data-dir ./kym-data`."""

    home: Path
    http_port: int
    mqtt_port: int

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"


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
