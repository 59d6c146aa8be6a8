"""The managed Mosquitto never coexists with a leftover broker, and is restarted when it dies."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from gateway.broker.mosquitto import ManagedMosquitto
from gateway.broker.supervisor import port_open
from tests.broker.kym_brokers import REGISTERED, RESULTS, KymBroker

pytestmark = pytest.mark.mosquitto


def managed(broker: KymBroker, binary: str) -> ManagedMosquitto:
    """Another manager of the same work dir and port, as a restarted kym serve makes."""
    return ManagedMosquitto(
        binary, broker.pki, "127.0.0.1", broker.port, broker.tmp / "mq", devices=lambda: REGISTERED
    )


def test_a_leftover_broker_named_by_the_pidfile_is_stopped_before_starting(
    mosquitto_broker: KymBroker, mosquitto_binary: str
) -> None:
    first = mosquitto_broker.control
    assert isinstance(first, ManagedMosquitto)
    first.stop()
    conf = mosquitto_broker.tmp / "mq" / "mosquitto.conf"
    leftover = subprocess.Popen(  # no parent-death signal: as if armed too late
        [mosquitto_binary, "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 5
    while not port_open("127.0.0.1", mosquitto_broker.port) and time.monotonic() < deadline:
        time.sleep(0.05)
    (mosquitto_broker.tmp / "mq" / "mosquitto.pid").write_text(f"{leftover.pid}\n")

    second = managed(mosquitto_broker, mosquitto_binary)
    second.start(datetime.now(UTC))
    try:
        assert leftover.wait(timeout=1) is not None
        assert second.alive() and second.pid() != leftover.pid
        device = mosquitto_broker.paho("dev-a")
        assert device.subscribe(RESULTS.format("dev-a")) == 1
        device.close()
    finally:
        second.stop()
        leftover.kill()
        leftover.wait()


def test_a_port_held_by_another_process_fails_the_start_loudly(
    tmp_path: Path, mosquitto_broker: KymBroker, mosquitto_binary: str
) -> None:
    mosquitto_broker.control.stop()
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", mosquitto_broker.port))
        squatter.listen()
        with pytest.raises(RuntimeError, match="in use by another process"):
            managed(mosquitto_broker, mosquitto_binary).start(datetime.now(UTC))


def test_a_broker_that_dies_alone_is_restarted_with_backoff(mosquitto_broker: KymBroker) -> None:
    control = mosquitto_broker.control
    assert isinstance(control, ManagedMosquitto)
    pids, waited = [control.pid()], []
    for _ in range(2):
        os.kill(pids[-1], signal.SIGKILL)  # type: ignore[arg-type]
        started = time.monotonic()
        while not (control.alive() and control.pid() not in pids):
            assert time.monotonic() - started < 10, "mosquitto was not restarted"
            time.sleep(0.02)
        pids.append(control.pid())
        waited.append(time.monotonic() - started)
    assert 0.5 <= waited[0] < waited[1], f"no backoff between quick deaths: {waited}"
    device = mosquitto_broker.paho("dev-b")
    assert device.subscribe(RESULTS.format("dev-b")) == 1
    device.close()
