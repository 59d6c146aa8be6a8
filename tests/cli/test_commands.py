"""The small promises of the command line: help names the KYM_* variables, the checks say in
one line when there is nothing to check, and `kym device` answers with exit codes a script can
use."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import httpx
import pytest
from click.testing import CliRunner

from gateway.cli import main
from gateway.settings import Settings
from tests.support.cli import Served, kym


def leaf_commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    found = []
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            found += leaf_commands(command, (*prefix, name))
        else:
            found.append((*prefix, name))
    return found


def help_of(*path: str) -> str:
    result = CliRunner().invoke(main, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    return result.output


def test_kym_help_lists_every_setting_variable() -> None:
    text = " ".join(help_of().split())
    for name in Settings.model_fields:
        assert f"KYM_{name.upper()}" in text


@pytest.mark.parametrize("path", leaf_commands(main), ids=" ".join)
def test_every_command_help_names_the_variables_it_reads(path: tuple[str, ...]) -> None:
    assert "KYM_" in help_of(*path)


@pytest.mark.parametrize("path", [(), *leaf_commands(main)], ids=" ".join)
def test_every_help_fits_an_80_column_terminal(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(main, [*path, "--help"], terminal_width=80)
    too_wide = [line for line in result.output.splitlines() if len(line) > 80]
    assert not too_wide, too_wide


@pytest.mark.parametrize(
    "path",
    [
        ("serve",),
        ("demo",),
        ("mosquitto-config",),
        ("ledger", "check"),
        ("audit", "verify"),
        ("bench",),
        ("simulate",),
        ("evidence", "verify"),
    ],  # fmt: skip
    ids=" ".join,
)
def test_each_operator_command_s_help_shows_an_example(path: tuple[str, ...]) -> None:
    said = help_of(*path)
    assert "Example" in said and f"kym {' '.join(path)} " in said, said


@pytest.mark.parametrize("path", [(), ("device",), ("evidence",)], ids=" ".join)
def test_no_command_s_summary_is_cut_short_in_80_columns(path: tuple[str, ...]) -> None:
    """Click cuts a summary that does not fit with "...": "Check evidence bundles (GET..."."""
    result = CliRunner().invoke(main, [*path, "--help"], terminal_width=80)
    listing = result.output.split("Commands:")[1]
    assert "..." not in listing, listing


def test_serve_help_names_every_setting_variable() -> None:
    text = " ".join(help_of("serve").split())
    for name in Settings.model_fields:
        assert f"KYM_{name.upper()}" in text


def numeric_settings() -> list[str]:
    return [
        name for name, field in Settings.model_fields.items() if field.annotation in (int, float)
    ]


@pytest.mark.parametrize("name", numeric_settings())
def test_serve_help_gives_every_numeric_setting_its_unit_and_default(name: str) -> None:
    text = " ".join(help_of("serve").split())
    variable, default = f"KYM_{name.upper()}", Settings.model_fields[name].default
    shown = re.findall(rf"{variable}(?:; | \()([a-z][a-z ]*), default ([0-9.]+)[])]", text)
    assert len(shown) == text.count(variable) >= 1, (variable, text)  # wherever it is named
    for unit, given in shown:
        assert float(given) == default
        assert unit.strip() not in ("", "default")
        if name.endswith("_s"):
            assert unit == "seconds"
        if name.endswith("_days"):
            assert unit == "days"


@pytest.mark.parametrize("command", [("audit", "verify"), ("ledger", "check")])
def test_checks_without_a_data_dir_say_so_in_one_line_and_exit_2(
    command: tuple[str, ...], tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere"
    completed = kym(*command, "--data-dir", str(missing))
    assert completed.returncode == 2, completed.stderr
    assert (
        completed.stderr.strip()
        == f"kym: no data dir at {missing} (give --data-dir or set KYM_DATA_DIR)"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    completed = kym(*command, "--data-dir", str(empty))
    assert completed.returncode == 2, completed.stderr
    assert len(completed.stderr.strip().splitlines()) == 1
    assert "no database in" in completed.stderr and "Traceback" not in completed.stderr


def test_device_commands_without_an_identity_say_what_to_do(tmp_path: Path) -> None:
    completed = kym("device", "pay", "mer_x", "100", "--state-dir", str(tmp_path / "car"))
    assert completed.returncode == 2
    assert "no registered device" in completed.stderr and "kym device register" in completed.stderr
    assert "Traceback" not in completed.stderr


def test_register_refuses_a_csr_for_another_key(tmp_path: Path) -> None:
    assert kym("device", "keygen", "--state-dir", str(tmp_path / "a")).returncode == 0
    assert kym("device", "keygen", "--state-dir", str(tmp_path / "b")).returncode == 0
    completed = kym(
        *("device", "register", "--state-dir", str(tmp_path / "a")),
        *("--csr", str(tmp_path / "b" / "device.csr"), "--api-key", "k", "--owner", "o"),
        *("--kind", "car", "--manufacturer", "m", "--model", "m", "--serial", "s"),
    )
    assert completed.returncode == 2
    assert "the CSR is not for the key in" in completed.stderr


def test_register_without_a_gateway_says_it_cannot_reach_it(tmp_path: Path) -> None:
    completed = kym(
        *("device", "register", "--state-dir", str(tmp_path / "car"), "--api"),
        *("http://127.0.0.1:9", "--api-key", "k", "--owner", "o", "--kind", "car"),
        *("--manufacturer", "m", "--model", "m", "--serial", "s"),
    )
    assert completed.returncode == 2
    assert completed.stderr.startswith("Error: cannot reach the gateway at http://127.0.0.1:9")


@pytest.mark.parametrize("served", ["embedded"], indirect=True)
def test_a_pump_hears_the_hold_placed_for_it_and_captures_it_and_a_refusal_exits_1(
    served: Served,
) -> None:
    home, api = served.home, served.api_url
    admin = {"Authorization": f"Bearer {(home / 'kym-data' / 'admin-token').read_text().strip()}"}
    with httpx.Client(base_url=api, timeout=10) as http:
        owner = http.post("/v1/owners", headers=admin, json={"name": "O", "timezone": "UTC"})
        integrator = http.post("/v1/integrators", headers=admin, json={"name": "I"}).json()
        owner_key = {"Authorization": f"Bearer {owner.json()['api_key']}"}
        env = {"KYM_API_URL": api, "KYM_API_KEY": integrator["api_key"]}
        broker = f"mqtts://127.0.0.1:{served.mqtt_port}"
        ids = {}
        for name, kind, extra in (
            ("car", "car", ()),
            ("pump", "fuel_pump", ("--category", "fuel")),
        ):
            made = kym("device", "keygen", "--key-type", "ed25519", "--state-dir", name, cwd=home)
            assert made.returncode == 0, made.stderr
            registered = kym(
                *("device", "register", "--state-dir", name, "--owner", owner.json()["id"]),
                *("--kind", kind, "--manufacturer", "M", "--model", "X", "--serial", name),
                *("--broker-url", broker, *extra),
                cwd=home,
                **env,
            )
            assert registered.returncode == 0, registered.stderr
            ids[name] = json.loads((home / name / "device.json").read_text())["id"]
            http.post(f"/v1/devices/{ids[name]}/approve", headers=owner_key).raise_for_status()
        car = ids["car"]
        again = kym(  # run again, without --broker-url and with a key that is nobody's
            *("device", "register", "--state-dir", "car", "--owner", owner.json()["id"]),
            *("--kind", "car", "--manufacturer", "M", "--model", "X", "--serial", "car"),
            cwd=home,
            KYM_API_URL=api,
            KYM_API_KEY="not-a-key",
        )
        assert again.returncode == 0, again.stderr
        assert again.stdout.startswith(f"car/ is registered already, as {car}: nothing was sent")
        assert json.loads((home / "car" / "endpoints.json").read_text())["broker"] == broker
        http.put(f"/v1/devices/{car}/rules", headers=owner_key, json={"currency": "EUR"})
        top_up = {"amount": 5000, "currency": "EUR", "idempotency_key": "k"}
        http.post(f"/v1/devices/{car}/wallet/top-ups", headers=owner_key, json=top_up)
    # The pump's first connection makes its persistent session; the event waits there for it.
    assert (
        kym("device", "listen", "--state-dir", "pump", "--timeout", "1", cwd=home).returncode == 0
    )
    for command in ("pay", "sign"):  # an order the contract refuses: one line, exit 2
        bad = kym("device", command, "no payee!", "100", "--state-dir", "car", cwd=home)
        assert bad.returncode == 2, bad.stdout + bad.stderr
        assert "Error: not a valid order: pay.payee" in bad.stderr
        assert "Traceback" not in bad.stderr
    held = kym("device", "hold", ids["pump"], "3000", "--state-dir", "car", cwd=home)
    assert held.returncode == 0, held.stdout + held.stderr
    assert held.stdout.startswith("approved payment pay_")
    heard = kym(
        "device", "listen", "--state-dir", "pump", "--count", "1", "--timeout", "20", cwd=home
    )
    assert heard.returncode == 0, heard.stderr
    event = json.loads(heard.stdout)
    assert (event["event"], event["amount"], event["payer_device_id"]) == ("hold_placed", 3000, car)
    refused = kym("device", "pay", ids["pump"], "2500", "--state-dir", "car", cwd=home)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert refused.stdout.startswith("declined insufficient_funds ")
    # The pump takes 25.00 of the 30.00 held; the rest goes back to the car.
    captured = kym(
        "device", "capture", event["payment_id"], "2500", "--state-dir", "pump", cwd=home
    )
    assert captured.returncode == 0, captured.stdout + captured.stderr
    assert captured.stdout.startswith(f"captured payment {event['payment_id']} ")
    with httpx.Client(base_url=api, timeout=10) as http:
        wallet = http.get(f"/v1/devices/{car}/wallet", headers=owner_key).json()
    assert (wallet["balance"], wallet["available"]) == (2500, 2500)


def test_register_refuses_a_file_that_is_not_a_key_without_the_library_text(
    tmp_path: Path,
) -> None:
    garbage = tmp_path / "car.key"
    garbage.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    completed = kym(
        *("device", "register", "--state-dir", str(tmp_path / "car"), "--key", str(garbage)),
        *("--api-key", "k", "--owner", "o", "--kind", "car"),
        *("--manufacturer", "m", "--model", "m", "--serial", "s"),
    )
    assert completed.returncode == 2
    assert completed.stderr == (
        f"Error: {garbage} is not an unencrypted P-256 or Ed25519 key in PEM\n"
    )


def test_ledger_check_on_an_unreachable_database_says_so_without_the_password_and_exits_2(
    tmp_path: Path,
) -> None:
    url = "postgresql+psycopg://kym:hunter2@127.0.0.1:1/kym"
    completed = kym("ledger", "check", "--data-dir", str(tmp_path), "--database-url", url)
    assert completed.returncode == 2, completed.stderr
    [line] = completed.stderr.splitlines()
    assert line.startswith("kym: cannot read the database postgresql+psycopg://kym:***@")
    assert "hunter2" not in completed.stderr


def test_audit_verify_without_the_signing_certificate_says_so_and_exits_2(tmp_path: Path) -> None:
    url = "postgresql+psycopg://kym:hunter2@127.0.0.1:1/kym"
    completed = kym("audit", "verify", "--data-dir", str(tmp_path), "--database-url", url)
    assert completed.returncode == 2, completed.stderr
    assert completed.stderr == (
        f"kym: no gateway signing certificate in {tmp_path} to check tree heads with\n"
    )
