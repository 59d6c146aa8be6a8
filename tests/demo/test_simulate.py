"""`kym simulate` as an operator runs it: a real process against a running gateway."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.gateway import ADMIN_TOKEN
from tests.support.stack import Http  # noqa: F401


def kym(*args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KYM_")}
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


@pytest.mark.parametrize("gateway", ["embedded"], indirect=True)
def test_simulate_runs_a_population_at_a_fixed_rate_and_prints_what_it_saw(
    live: Http,  # noqa: F811
    tmp_path: Path,
) -> None:
    data_dir = tmp_path / "operator"
    data_dir.mkdir()
    (data_dir / "admin-token").write_text(ADMIN_TOKEN + "\n")  # as `kym serve` writes it
    completed = kym(
        "simulate",
        "--devices",
        "6",
        "--rate",
        "10",
        "--duration",
        "2",
        "--api",
        live.url,
        "--broker-url",
        f"mqtts://127.0.0.1:{live.stack.port}",
        "--data-dir",
        str(data_dir),
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    out = completed.stdout
    assert re.search(r"^20 arrivals in [\d.]+ s", out, re.MULTILINE), out
    assert re.search(r"latency to first result p50 [\d.]+ ms p99 [\d.]+ ms", out), out
    assert re.search(r"^results: .*approved \d+", out, re.MULTILINE), out
    assert "unanswered 0, dropped 0, surprises 0" in out


def test_simulate_without_an_admin_token_says_where_one_comes_from(tmp_path: Path) -> None:
    completed = kym("simulate", "--data-dir", str(tmp_path))
    assert completed.returncode == 2
    assert "no admin token" in completed.stderr and "KYM_ADMIN_TOKEN" in completed.stderr


@pytest.mark.parametrize("gateway", ["embedded"], indirect=True)
def test_simulate_against_a_broker_that_is_not_there_says_so_in_one_line(
    live: Http,  # noqa: F811
    tmp_path: Path,
) -> None:
    """It ended in the SDK's ConnectFailed traceback."""
    from gateway.server import free_port

    broker = f"mqtts://127.0.0.1:{free_port()}"  # nothing listens there
    (tmp_path / "admin-token").write_text(ADMIN_TOKEN + "\n")
    args = ["--api", live.url, "--broker-url", broker, "--data-dir", str(tmp_path)]
    completed = kym("simulate", "--devices", "1", "--duration", "1", *args)
    assert completed.returncode == 1, completed.stderr
    assert "Traceback" not in completed.stderr, completed.stderr[-2000:]
    [line] = completed.stderr.splitlines()
    assert line.startswith("Error: could not open a connection to the broker at 127.0.0.1:")
    assert "give --broker-url, or KYM_DEVICE_BROKER_URL" in line
