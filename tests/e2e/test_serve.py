"""`kym serve` and `kym mosquitto-config` as a user runs them: real processes, real Mosquitto."""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gateway.broker.supervisor import port_open
from gateway.server import free_port
from tests.broker.rawmqtt import RawClient, connect_packet
from tests.e2e.concurrency_helpers import wait_healthy
from tests.e2e.serve_helpers import Car, healthz, kym, serve

pytestmark = pytest.mark.mosquitto


def test_serve_stops_within_ten_seconds_and_stops_its_broker(
    tmp_path: Path, mosquitto_binary: str
) -> None:
    http, port = free_port(), free_port()
    process = serve(tmp_path, tmp_path / "d", http, port)
    try:
        wait_healthy(http)
        conf = str(tmp_path / "d" / "mosquitto" / "mosquitto.conf")
        assert subprocess.run(["pgrep", "-f", conf], capture_output=True).returncode == 0
        started = time.monotonic()
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
        assert time.monotonic() - started < 10
        assert subprocess.run(["pgrep", "-f", conf], capture_output=True).returncode != 0
    finally:
        process.kill()
        process.wait()


@pytest.fixture
def external(tmp_path: Path, mosquitto_binary: str) -> Iterator[tuple[int, int, Path]]:
    """`kym mosquitto-config` output run by `mosquitto -c`, and `kym serve --broker-url`."""
    data, out, port, http = tmp_path / "d", tmp_path / "mq", free_port(), free_port()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "mosquitto-config",
            "--data-dir",
            str(data),
            "--listen",
            f"127.0.0.1:{port}",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    conf = (out / "mosquitto.conf").read_text()
    for needed in (
        "require_certificate true",
        "use_identity_as_username true",
        "use_username_as_clientid true",
        "crlfile /",
        "allow_anonymous false",
        "plugin /",
        "persistence true",
        f"plugin {out.resolve()}/kym_ratelimit.so\nplugin_opt_rate 20\nplugin_opt_burst 100\n",
    ):
        assert needed in conf
    assert '"subscribe": false' in (out / "dynsec.json").read_text()
    broker = subprocess.Popen(
        [mosquitto_binary, "-c", str(out / "mosquitto.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    gateway = kym(
        tmp_path / "serve.log",
        "serve",
        "--data-dir",
        str(data),
        "--broker-url",
        f"mqtts://127.0.0.1:{port}",
        "--http",
        f"127.0.0.1:{http}",
    )
    try:
        wait_healthy(http)
        yield port, http, data
    finally:
        for process in (gateway, broker):
            process.terminate()
            process.wait(timeout=15)


def test_device_pays_through_an_external_mosquitto(
    external: tuple[int, int, Path], tmp_path: Path
) -> None:
    port, http, data = external
    car = Car(http, tmp_path)
    car.connect(port)
    assert car.pay("o-1")["status"] == "approved"
    car.revoke()
    # the gateway deleted the device's dynsec entry: its session ends, and although the
    # operator has not reloaded the CRL yet, the certificate may do nothing any more
    assert car.ended.wait(5), "the revoked device's session survived"
    car.close()
    again = RawClient(port, car.tls())
    assert again.connect(client_id=car.id) == (False, 0)
    assert again.subscribe(1, f"kym/v1/devices/{car.id}/results") == [0x80]
    again.close()
    for command in ("audit verify", "ledger check"):
        done = subprocess.run(
            [sys.executable, "-m", "gateway.cli", *command.split(), "--data-dir", str(data)],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr


def mosquitto_running(conf: Path) -> bool:
    return subprocess.run(["pgrep", "-f", str(conf)], capture_output=True).returncode == 0


def refused(port: int, car: Car) -> bool:
    """True if the broker will not serve this car's certificate (handshake or CONNECT)."""
    try:
        client = RawClient(port, car.tls())
    except (ssl.SSLError, ConnectionError):
        return True
    try:
        client.send(connect_packet(client_id=car.id))
        return client.receive() is None
    except (ssl.SSLError, ConnectionError):
        return True
    finally:
        client.close()


def test_a_killed_serve_leaves_no_broker_and_the_next_one_refuses_revoked_devices(
    tmp_path: Path, mosquitto_binary: str
) -> None:
    data, http, port = tmp_path / "d", free_port(), free_port()
    conf = data / "mosquitto" / "mosquitto.conf"
    first = serve(tmp_path, data, http, port)
    try:
        wait_healthy(http)
        car = Car(http, tmp_path)
        car.connect(port)
        assert car.pay("o-1")["status"] == "approved"
        first.kill()  # SIGKILL: nothing in kym serve runs any more
        first.wait()
        deadline = time.monotonic() + 5
        while (mosquitto_running(conf) or port_open("127.0.0.1", port)) and (
            time.monotonic() < deadline
        ):
            time.sleep(0.05)
        assert not mosquitto_running(conf), "mosquitto outlived its kym serve"
        assert not port_open("127.0.0.1", port)
        car.disconnect()
    finally:
        first.kill()
        first.wait()
    second = serve(tmp_path, data, http, port)
    try:
        wait_healthy(http)
        car.connect(port)
        assert car.pay("o-2")["status"] == "approved"
        car.revoke()
        assert car.ended.wait(5), "the revoked device's session survived"
        car.close()
        assert refused(port, car), "a revoked certificate was served"
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(15)
    assert not mosquitto_running(conf)


def test_a_broker_that_dies_is_restarted_and_healthz_follows_it(
    tmp_path: Path, mosquitto_binary: str
) -> None:
    data, http, port = tmp_path / "d", free_port(), free_port()
    process = serve(tmp_path, data, http, port)
    try:
        wait_healthy(http)
        car = Car(http, tmp_path)
        car.connect(port)
        assert car.pay("o-1")["status"] == "approved"
        pid = int((data / "mosquitto" / "mosquitto.pid").read_text())
        os.kill(pid, signal.SIGKILL)
        seen: list[int | None] = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (503 in seen and seen[-1] == 200):
            seen.append(healthz(http))
            time.sleep(0.05)
        assert 503 in seen, f"/healthz never said the broker was away: {set(seen)}"
        assert seen[-1] == 200, "/healthz did not recover"
        assert int((data / "mosquitto" / "mosquitto.pid").read_text()) != pid
        assert car.pay("o-2")["status"] == "approved"
        car.close()
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(15)


def test_a_second_serve_on_a_data_dir_in_use_is_refused_and_touches_nothing(
    tmp_path: Path, mosquitto_binary: str
) -> None:
    data, http, port = tmp_path / "d", free_port(), free_port()
    first = serve(tmp_path, data, http, port)
    try:
        wait_healthy(http)
        broker_pid = int((data / "mosquitto" / "mosquitto.pid").read_text())
        log = tmp_path / "second.log"
        second = kym(
            log, "serve", "--data-dir", str(data),
            "--http", f"127.0.0.1:{free_port()}", "--mqtt", f"127.0.0.1:{free_port()}",
        )  # fmt: skip
        try:
            assert second.wait(timeout=30) == 2, log.read_text()[-2000:]
        finally:
            second.kill()
            second.wait()
        said = log.read_text()
        assert f"{data} is in use: kym serve (pid {first.pid}) runs its broker" in said, said
        assert "Traceback" not in said
        # the running gateway's broker was not taken for a leftover and stopped
        assert int((data / "mosquitto" / "mosquitto.pid").read_text()) == broker_pid
        os.kill(broker_pid, 0)
        assert healthz(http) == 200
        car = Car(http, tmp_path)
        car.connect(port)
        assert car.pay("o-1")["status"] == "approved"
        car.close()
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(15)


def test_ctrl_c_to_the_process_group_stops_serve_without_restarting_its_broker(
    tmp_path: Path, mosquitto_binary: str
) -> None:
    """A terminal's Ctrl-C reaches the whole foreground process group: the managed Mosquitto
    must not get it too, exit, and be restarted (with an ERROR) while `kym serve` stops."""
    data, http, port = tmp_path / "d", free_port(), free_port()
    log = tmp_path / "serve.log"
    env = {**os.environ, "KYM_ADMIN_TOKEN": "t"}
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway.cli", "serve", "--data-dir", str(data),
             "--http", f"127.0.0.1:{http}", "--mqtt", f"127.0.0.1:{port}"],
            env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        wait_healthy(http)
        os.killpg(process.pid, signal.SIGINT)  # as the terminal does
        assert process.wait(timeout=10) == 0
    finally:
        process.kill()
        process.wait()
    said = log.read_text()
    assert "restarting" not in said and "ERROR" not in said, said[-2000:]
    conf = str(data / "mosquitto" / "mosquitto.conf")
    assert subprocess.run(["pgrep", "-f", conf], capture_output=True).returncode != 0
