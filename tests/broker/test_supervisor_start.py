"""The supervisor waits for a child that is alive and still loading, and fails fast on one
that exits. The child is a small Python program standing in for a slow Mosquitto (one with a
million-entry dynsec.json): it listens only once a file appears, and the test creates that file
from the supervisor's `patience` hook, so that the child listens strictly after the first wait
ran out, whatever the speed of the machine."""

from __future__ import annotations

import contextlib
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.broker.supervisor import Supervisor

LATE_LISTENER = """
import os, socket, sys, time
go, port = sys.argv[1], int(sys.argv[2])
while not os.path.exists(go):
    time.sleep(0.01)
server = socket.create_server(("127.0.0.1", port))
while True:
    server.accept()[0].close()
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def supervisor(
    tmp_path: Path, argv: list[str], port: int, patience: Callable[[], float]
) -> Supervisor:
    return Supervisor(
        argv, "127.0.0.1", port, tmp_path, prepare=lambda: None, guard=threading.Lock(),
        patience=patience,
    )  # fmt: skip


def test_a_child_that_listens_after_the_first_wait_is_waited_for(tmp_path: Path) -> None:
    port, go = free_port(), tmp_path / "go"
    argv = [sys.executable, "-c", LATE_LISTENER, str(go), str(port)]
    consulted: list[bool] = []

    def patience() -> float:
        consulted.append(True)
        go.touch()  # only now may the child listen
        return 300.0

    late = supervisor(tmp_path, argv, port, patience)
    late.start(timeout_s=0.1)
    try:
        assert consulted == [True]
        assert late.alive()
        assert (tmp_path / "mosquitto.pid").read_text().split() == [str(late.process.pid)]  # type: ignore[union-attr]
    finally:
        late.stop()
    assert not late.alive()


def test_a_child_that_never_listens_is_killed_once_the_patience_runs_out(
    tmp_path: Path,
) -> None:
    port = free_port()
    argv = [sys.executable, "-c", LATE_LISTENER, str(tmp_path / "never"), str(port)]
    silent = supervisor(tmp_path, argv, port, lambda: 0.3)
    with pytest.raises(RuntimeError, match="did not listen"):
        silent.start(timeout_s=0.1)
    assert silent.process is not None and silent.process.poll() is not None
    with contextlib.suppress(Exception):
        silent.stop()


def test_a_child_that_exits_fails_the_start_without_waiting_for_the_patience(
    tmp_path: Path,
) -> None:
    port = free_port()
    failing = supervisor(
        tmp_path, [sys.executable, "-c", "raise SystemExit(3)"], port, lambda: 3600.0
    )
    with pytest.raises(RuntimeError, match="exited at start"):
        failing.start(timeout_s=3600.0)
    assert failing.process is not None and failing.process.returncode == 3
