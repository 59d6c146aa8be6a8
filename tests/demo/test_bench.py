"""`kym bench` after its move to `simulators/bench`: SDK devices against a real `kym serve`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_bench_sends_every_order_and_reports_every_result(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KYM_")}
    env["COLUMNS"] = "200"
    command = [sys.executable, "-m", "gateway.cli", "bench", "--devices", "2", "--orders", "40"]
    started = time.time()
    completed = subprocess.run(
        [*command, "--broker", "embedded", "--key-type", "ed25519", "--json"]
        + ["--latencies", "latencies.csv"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "kym bench: 2 devices, ed25519, embedded broker, SQLite" in completed.stderr
    assert "not passed" not in completed.stderr  # no KYM_* variable was set
    numbers = json.loads(completed.stdout.strip().splitlines()[-1])
    assert (numbers["orders"], numbers["results"], numbers["lost"]) == (40, 40, 0)
    assert numbers["duplicated"] == 0
    assert numbers["statuses"] == {"approved": 40}
    assert numbers["payments_per_s"] > 0
    assert 0 < numbers["p50_ms"] <= numbers["p95_ms"] <= numbers["p99_ms"] <= numbers["max_ms"]
    assert numbers["cpu_s"]["gateway"] > 0 and numbers["cpu_s"]["load"] > 0
    assert numbers["cpu_s"]["broker"] is None  # the embedded broker runs inside the gateway
    lines = (tmp_path / "latencies.csv").read_text().splitlines()
    assert lines[0] == "sent_s,latency_ms,sent_unix" and len(lines) == 1 + 40  # one per result
    rows = [tuple(map(float, line.split(","))) for line in lines[1:]]
    assert rows[0][0] == 0 and [r[0] for r in rows] == sorted(r[0] for r in rows)
    assert all(latency > 0 for _, latency, _ in rows)
    assert max(latency for _, latency, _ in rows) == pytest.approx(numbers["max_ms"], abs=0.01)
    assert all(abs(unix - (rows[0][2] + sent)) < 0.01 for sent, _, unix in rows)
    assert started < rows[0][2] < time.time()


def test_bench_holds_idle_mutual_tls_connections_while_others_pay(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KYM_")}
    env["COLUMNS"] = "200"
    command = [sys.executable, "-m", "gateway.cli", "bench", "--devices", "2", "--orders", "40"]
    completed = subprocess.run(
        [*command, "--broker", "mosquitto", "--connected", "50", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    numbers = json.loads(completed.stdout.strip().splitlines()[-1])
    assert (numbers["orders"], numbers["results"], numbers["lost"]) == (40, 40, 0)
    assert (numbers["connected"], numbers["idle_failed"]) == (50, 0)
    assert numbers["idle_still_open"] == 50  # none was dropped while the others paid
    assert numbers["broker_process"] == "mosquitto"
    assert numbers["broker_rss_kb_after"] > numbers["broker_rss_kb_before"] > 0
    assert numbers["broker_kb_per_connection"] > 0


def test_bench_names_the_callers_settings_it_does_not_pass_on(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KYM_")}
    env |= {"COLUMNS": "200", "KYM_CRYPTO_HELPERS": "false", "KYM_DEVICE_RATE": "5"}
    command = [sys.executable, "-m", "gateway.cli", "bench", "--devices", "1", "--orders", "4"]
    completed = subprocess.run(
        [*command, "--broker", "embedded", "--json"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert (
        "not passed to the gateway it starts: KYM_CRYPTO_HELPERS, KYM_DEVICE_RATE"
        in completed.stderr
    )
    assert json.loads(completed.stdout.strip().splitlines()[-1])["statuses"] == {"approved": 4}
    unused = [line for line in completed.stderr.splitlines() if "not passed" in line]
    assert len(unused) == 1, completed.stderr
