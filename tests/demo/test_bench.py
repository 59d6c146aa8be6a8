"""`kym bench` after its move to `simulators/bench`: SDK devices against a real `kym serve`."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_bench_sends_every_order_and_reports_every_result(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KYM_")}
    env["COLUMNS"] = "160"
    command = [sys.executable, "-m", "gateway.cli", "bench", "--devices", "2", "--orders", "40"]
    completed = subprocess.run(
        [*command, "--broker", "embedded", "--key-type", "ed25519"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    out = completed.stdout
    assert "kym bench: 2 devices, ed25519, embedded broker, SQLite" in out
    row = re.search(r"│ 40\s+│ 40\s+│ [\d.]+\s+│ \d+\s+│ [\d.]+\s+│ [\d.]+\s+│ (.*?)\s+│", out)
    assert row, out
    assert row.group(1) == "{'approved': 40}"
