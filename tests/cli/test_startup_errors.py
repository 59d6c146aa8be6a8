"""What stops `kym serve` or `kym mosquitto-config` from starting is one line naming the flag,
variable or resource at fault, and exit 2: never a Python traceback."""

from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

import pytest

from gateway.server import free_port
from tests.support.cli import kym


def _serve(tmp_path: Path, *flags: str) -> list[str]:
    http, mqtt = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    return ["serve", "--data-dir", str(tmp_path / "d"), "--http", http, "--mqtt", mqtt, *flags]


def _one_line_exit_2(result: subprocess.CompletedProcess[str], expected: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    said = result.stderr
    assert "Traceback" not in said, said[-2000:]
    assert expected in said.strip().splitlines()[-1], said[-2000:]


@pytest.mark.parametrize(
    ("flags", "env", "expected"),
    [
        (["--workers", "0"], {}, "kym: --workers: Input should be greater than or equal to 1"),
        ([], {"KYM_DEVICE_RATE": "abc"}, "kym: KYM_DEVICE_RATE: Input should be a valid number"),
        (["--worker-index", "-1"], {}, "kym: --worker-index:"),
        (["--broker-url", "http://h:1"], {}, "must look like mqtts://HOST:PORT"),
        (["--broker", "embedded", "--http", "127.0.0.1:abc"], {}, "is not HOST:PORT"),
        (["--database-url", "mysql://u@h/db"], {}, "kym: --database-url: 'mysql' is not a"),
        (["--database-url", "postgres://u@h/db"], {}, "is spelt postgresql+psycopg://"),
    ],
)
def test_a_setting_that_does_not_do_names_its_flag_or_variable(
    tmp_path: Path, flags: list[str], env: dict[str, str], expected: str
) -> None:
    result = kym(*_serve(tmp_path, *flags), KYM_DEVICE_RATE=env.get("KYM_DEVICE_RATE", "10"))
    _one_line_exit_2(result, expected)
    assert not (tmp_path / "d").exists()  # refused before anything was made


def test_an_external_broker_leaves_the_mqtt_setting_unchecked(tmp_path: Path) -> None:
    from gateway.settings import Settings

    outside = Settings(data_dir=tmp_path, broker_url="mqtts://127.0.0.1:8883", mqtt="bogus")
    assert outside.broker_url and outside.mqtt == "bogus"
    with pytest.raises(ValueError, match="is not HOST:PORT"):
        Settings(data_dir=tmp_path, mqtt="bogus")


@pytest.mark.parametrize("command", [["ledger", "check"], ["audit", "verify"]])
def test_the_checks_refuse_a_database_kym_does_not_run_on(command: list[str]) -> None:
    """A driver that is not installed ended in an ImportError's traceback."""
    result = kym(*command, "--database-url", "mysql://u@h/db")
    _one_line_exit_2(result, "give postgresql+psycopg://USER@HOST/DB or sqlite:///PATH")


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/test"
    result = kym(*_serve(tmp_path, "--broker", "embedded", "--database-url", url))
    _one_line_exit_2(result, "kym: serve could not start: ")
    assert "Connection refused" in result.stderr


def test_a_data_dir_under_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    args = _serve(tmp_path, "--broker", "embedded")
    args[2] = str(tmp_path / "afile" / "sub")
    _one_line_exit_2(kym(*args), "Not a directory")


def test_a_broker_port_in_use_is_one_line(tmp_path: Path) -> None:
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        args = _serve(tmp_path, "--broker", "embedded")
        args[6] = f"127.0.0.1:{port}"
        _one_line_exit_2(kym(*args), "kym: serve could not start: ")


def test_an_http_port_in_use_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    """uvicorn found it only once the broker and the workers ran: it logged the error, the
    serve's own line said the API was on that port, and it exited 3."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        address = f"127.0.0.1:{held.getsockname()[1]}"
        args = _serve(tmp_path, "--broker", "embedded")
        args[4] = address
        _one_line_exit_2(kym(*args), f"--http {address} is in use by another process")
    assert not (tmp_path / "d" / "ca").exists()  # refused before the CAs or the broker


def test_more_workers_than_gateway_identities_is_refused_before_anything_starts(
    tmp_path: Path,
) -> None:
    """It was found only once the CAs, the database and the broker had been made."""
    result = kym(
        *_serve(tmp_path, "--broker", "embedded", "--worker-index", "15", "--workers", "2")
    )
    _one_line_exit_2(result, "--worker-index 15 + --workers 2 must stay within the 16")
    assert not (tmp_path / "d" / "ca").exists() and not (tmp_path / "d" / "kym.db").exists()


def test_mosquitto_config_names_what_is_wrong(tmp_path: Path) -> None:
    out = str(tmp_path / "conf")
    bad = kym(
        "mosquitto-config", "--data-dir", str(tmp_path / "d"), "--listen", "h:x", "--out", out
    )
    _one_line_exit_2(bad, "kym: --listen: 'h:x' is not HOST:PORT")
    (tmp_path / "pg" / "ca").mkdir(parents=True)  # a data dir whose kym serve used PostgreSQL
    no_db = kym("mosquitto-config", "--data-dir", str(tmp_path / "pg"), "--listen",
                "127.0.0.1:8883", "--out", out)  # fmt: skip
    _one_line_exit_2(no_db, "give --database-url (or KYM_DATABASE_URL)")
    assert not (tmp_path / "pg" / "kym.db").exists()  # no empty SQLite database made there
    (tmp_path / "afile").write_text("")  # an --out it cannot make: a traceback, after the CAs
    no_out = kym("mosquitto-config", "--data-dir", str(tmp_path / "new"), "--listen",
                 "127.0.0.1:8883", "--out", str(tmp_path / "afile" / "conf"))  # fmt: skip
    _one_line_exit_2(no_out, "kym: mosquitto-config could not start: ")
    assert "Not a directory" in no_out.stderr and not (tmp_path / "new").exists()


@pytest.mark.parametrize(
    "args",
    [
        ["bench", "--devices", "0"],
        ["bench", "--rate", "-5"],
        ["simulate", "--devices", "0"],
        ["simulate", "--rate", "0"],
        ["simulate", "--duration", "-1"],
        ["demo", "--duration", "-1"],  # ran the demo and printed an empty summary
        ["demo", "--duration", "0"],
    ],
)
def test_load_commands_refuse_numbers_out_of_range_before_starting(args: list[str]) -> None:
    result = kym(*args)
    assert result.returncode == 2 and "is not in the range" in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_bench_refuses_an_open_loop_run_whose_last_orders_would_be_stale() -> None:
    """Its orders are signed before the clock starts: 180,000 at 300 a second would go out
    over 600 s, and half would be refused as `stale_order` (seen in a soak run)."""
    result = kym("bench", "--orders", "180000", "--rate", "300")
    assert result.returncode == 2, result.stderr
    assert "takes 600 s to send" in result.stderr and "at most --orders 72000" in result.stderr
    assert "Traceback" not in result.stderr


def test_bench_never_prints_a_database_password() -> None:
    from simulators.cli import _hide_password

    shown = _hide_password("postgresql+psycopg://postgres:s3cret@127.0.0.1:5432/bench")
    assert "s3cret" not in shown and shown.startswith("postgresql+psycopg://postgres:***@")


def test_serve_says_when_it_cannot_reach_its_broker(tmp_path: Path) -> None:
    """paho retries a broker that is not there without a word: the log says so. With
    `--broker-url`, `--mqtt` is ignored (section 1): not even checked."""
    from tests.support.cli import BIN, clean_env

    log = tmp_path / "serve.log"
    broker = f"mqtts://127.0.0.1:{free_port()}"  # nothing listens there
    args = ["serve", "--data-dir", str(tmp_path / "d"), "--http", f"127.0.0.1:{free_port()}"]
    with log.open("w") as out:
        process = subprocess.Popen(
            [str(BIN / "kym"), *args, "--broker-url", broker, "--mqtt", "ignored"],
            env=clean_env(KYM_ADMIN_TOKEN="t"), stdout=out, stderr=out,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while "cannot reach the broker" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(15)
    said = log.read_text()
    assert f"cannot reach the broker at {broker.removeprefix('mqtts://')}" in said, said[-2000:]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::1]"])
def test_the_api_socket_is_bound_for_the_host_s_own_family(host: str) -> None:
    """The socket serve hands uvicorn is bound before the rest starts, for IPv6 as for IPv4."""
    from gateway.settings import Settings
    from gateway.startup import bind_http

    if host == "[::1]" and not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    listener = bind_http(Settings(http=f"{host}:{free_port()}"))
    with listener:
        expected = socket.AF_INET6 if host == "[::1]" else socket.AF_INET
        assert listener.family == expected
