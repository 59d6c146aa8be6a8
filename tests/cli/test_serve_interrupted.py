"""A Ctrl-C while `kym serve` starts stops it, even when the KeyboardInterrupt it raises is lost:
raised inside a garbage collector's callback, Python prints it ("Exception ignored in ...") and
drops it, and start-up went on to serve (seen in a terminal, pressing Ctrl-C 3 s in)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from contextlib import suppress
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from gateway import server
from gateway.http.tls import HttpTls
from gateway.settings import Settings
from tests.support.cli import BIN, clean_env


def test_a_ctrl_c_lost_during_start_up_still_stops_serve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def start_services(*_: Any) -> tuple[Any, list[Any]]:
        with suppress(KeyboardInterrupt):  # lost, as in a garbage collector's callback
            os.kill(os.getpid(), signal.SIGINT)  # the terminal's Ctrl-C, here and now
        return SimpleNamespace(pki=None, clock=lambda: None), []

    def run(*_: Any, **__: Any) -> None:
        raise AssertionError("it went on to serve")

    monkeypatch.setattr(server, "start_services", start_services)
    monkeypatch.setattr(server, "app_for", lambda *_: object())
    monkeypatch.setattr(server, "http_tls", lambda *_: HttpTls())
    monkeypatch.setattr(server._Server, "run", run)
    settings = Settings(
        data_dir=tmp_path / "d", http=f"127.0.0.1:{server.free_port()}", admin_token="t"
    )
    try:
        with pytest.raises(KeyboardInterrupt):
            server.serve(settings)
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def test_ctrl_c_while_serve_starts_exits_130_in_one_line(tmp_path: Path) -> None:
    """SIGINT as soon as the data dir appears, long before the gateway is up: exit 130, as a
    shell reports an interrupted command, not click's "Aborted!" and exit 1 (a failure)."""
    data = tmp_path / "d"
    command = [str(BIN / "kym"), "serve", "--data-dir", str(data), "--broker", "embedded",
               "--http", f"127.0.0.1:{server.free_port()}",
               "--mqtt", f"127.0.0.1:{server.free_port()}"]  # fmt: skip
    process = subprocess.Popen(
        command, env=clean_env(KYM_ADMIN_TOKEN="t"), stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 30
        while not data.exists() and time.monotonic() < deadline and process.poll() is None:
            time.sleep(0.005)
        assert data.exists() and process.poll() is None
        process.send_signal(signal.SIGINT)
        _out, said = process.communicate(timeout=20)
    finally:
        process.kill()
        process.wait()
    assert process.returncode == 130, said[-2000:]
    assert "Aborted!" not in said and "Traceback" not in said, said[-2000:]
    assert said.strip().splitlines()[-1] == "kym: interrupted", said[-2000:]
    assert "HTTP API on" not in said, said[-2000:]  # it was stopped while starting
