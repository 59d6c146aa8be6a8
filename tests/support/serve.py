"""`kym serve` as a process of its own, for the tests that stop and restart it."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from tests.e2e.serve_helpers import healthz, kym


def start(tmp_path: Path, data: Path, http: int, mqtt_port: int) -> subprocess.Popen[bytes]:
    """`kym serve` on these ports and data dir, once it answers /healthz."""
    process = kym(
        tmp_path / "serve.log",
        "serve",
        "--data-dir",
        str(data),
        "--http",
        f"127.0.0.1:{http}",
        "--mqtt",
        f"127.0.0.1:{mqtt_port}",
        "--broker",
        "embedded",  # dies with the process: nothing outlives the SIGKILL
        "--webhook-allow-private",
    )
    deadline = time.monotonic() + 30
    while healthz(http) != 200:
        assert time.monotonic() < deadline, (tmp_path / "serve.log").read_text()[-3000:]
        time.sleep(0.2)
    return process
