"""`kym demo` as a newcomer runs it: a real process on embedded defaults, its output read back.

The demo plays a fixed script before the devices act by themselves, so every outcome below
must show in every run, whatever the simulators' dice say.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.demo import assert_tells_the_whole_story

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]


def run_kym_demo(command: list[str], cwd: Path, timeout_s: float = 150) -> str:
    """Run the demo without a terminal, as CI does; its output, once it exited 0."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KYM_") and k != "PYTHONPATH"}
    env["COLUMNS"] = "160"  # the summary's tables unwrapped, whatever the runner's default
    completed = subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout_s
    )
    assert completed.returncode == 0, (
        f"exit {completed.returncode}\n{completed.stdout}\n{completed.stderr}"
    )
    return completed.stdout


def assert_left_nothing_behind(output: str) -> None:
    """No broker still running from the demo's temp dir, and the dir itself gone."""
    match = re.search(r"gateway in (\S+kym-demo-\w+) ", output)
    assert match, output
    tmp = match.group(1)
    assert subprocess.run(["pgrep", "-f", tmp], capture_output=True).returncode == 1
    assert not Path(tmp).exists()


@pytest.mark.mosquitto
def test_kym_demo_for_30_seconds_shows_every_outcome_and_a_sound_ledger(
    tmp_path: Path, mosquitto_binary: str
) -> None:
    output = run_kym_demo(
        [sys.executable, "-m", "gateway.cli", "demo", "--duration", "30"], cwd=tmp_path
    )
    assert "Mosquitto on mqtts://127.0.0.1:" in output  # auto picks it when installed
    assert_tells_the_whole_story(output)
    assert_left_nothing_behind(output)


def test_kym_demo_on_the_embedded_broker_shows_every_outcome_too(tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-m",
        "gateway.cli",
        "demo",
        "--duration",
        "20",
        "--broker",
        "embedded",
    ]
    output = run_kym_demo(command, cwd=tmp_path)
    assert "the embedded broker on mqtts://127.0.0.1:" in output
    assert_tells_the_whole_story(output)
    assert_left_nothing_behind(output)


@pytest.mark.timeout(900)
def test_kym_demo_runs_in_a_fresh_virtual_environment(tmp_path: Path) -> None:
    """The package and its dependencies from scratch (pip reaches PyPI; without a network
    this fails rather than skips), then `kym demo` from the venv's own entry point."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, source / name)
    for package in ("gateway", "devices", "wallet", "simulators"):
        shutil.copytree(
            REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    pip = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert pip.returncode == 0, f"pip install failed\n{pip.stdout}\n{pip.stderr}"
    output = run_kym_demo([str(venv / "bin" / "kym"), "demo", "--duration", "20"], cwd=tmp_path)
    assert_tells_the_whole_story(output)


@pytest.mark.parametrize("sigterms", [1, 2], ids=["once", "twice"])
def test_sigterm_ends_the_demo_as_ctrl_c_does(tmp_path: Path, sigterms: int) -> None:
    """A SIGTERM (a service manager, `kill`) stops the demo cleanly: summary, exit 0, and no
    temp dir left holding its CA and device keys. Twice too: `timeout 60 make demo` signals
    make's process group, and make passes the signal on to the demo again."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KYM_") and k != "PYTHONPATH"}
    env["COLUMNS"] = "160"
    out = tmp_path / "demo.out"
    command = [sys.executable, "-m", "gateway.cli", "demo", "--broker", "embedded"]
    with out.open("w") as sink:
        process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=sink, stderr=sink)
    try:
        deadline = time.monotonic() + 60
        while "gateway in " not in out.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)  # some orders decided
        for _ in range(sigterms):
            process.send_signal(signal.SIGTERM)
            time.sleep(0.05)
        assert process.wait(timeout=60) == 0, out.read_text()[-3000:]
    finally:
        process.kill()
        process.wait()
    output = out.read_text()
    assert "ledger: reconciled" in output, output[-3000:]
    assert_left_nothing_behind(output)
