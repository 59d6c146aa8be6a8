"""The audit trail is hash-chained: tampering with a row or cutting the tail is detected."""

from __future__ import annotations

import sqlite3
import subprocess
import sys

import pytest

from gateway.service import verify_audit
from tests.service.conftest import World


def run_verify(world: World) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "audit",
            "verify",
            "--data-dir",
            str(world.ctx.settings.data_dir),
            "--database-url",
            world.ctx.db.url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def produce_entries(world: World) -> None:
    shop = world.party("merchants", {"name": "shop", "category": "fuel"})
    car = world.device("car", rules={"currency": "EUR"})
    assert (
        car.send(car.order(type="pay", payee=shop["id"], amount=100, currency="EUR"))["status"]
        == "approved"
    )


def test_intact_chain_verifies(world: World) -> None:
    produce_entries(world)
    done = run_verify(world)
    assert done.returncode == 0, done.stderr
    assert "intact" in done.stdout


def test_changed_row_is_named(world: World) -> None:
    produce_entries(world)
    with world.ctx.db.transaction() as conn:
        conn.exec_driver_sql(
            "UPDATE audit_log SET data = replace(data, '100', '999') "
            "WHERE action = 'order.approved'"
        )
        seq = conn.exec_driver_sql(
            "SELECT seq FROM audit_log WHERE action = 'order.approved'"
        ).scalar_one()
    done = run_verify(world)
    assert done.returncode != 0
    assert f"entry {seq}" in done.stderr


def test_every_column_is_covered(world: World) -> None:
    produce_entries(world)
    for column, value in [
        ("actor", "'admin'"),
        ("action", "'x'"),
        ("device_id", "'dev_x'"),
        ("at", "'2020-01-01 00:00:00'"),
        ("prev_hash", "'00'"),
        ("hash", "'ab'"),
    ]:
        with world.ctx.db.transaction() as conn:
            original = conn.exec_driver_sql(
                f"SELECT {column} FROM audit_log WHERE seq = 2"
            ).scalar_one()
            conn.exec_driver_sql(f"UPDATE audit_log SET {column} = {value} WHERE seq = 2")
        assert verify_audit(world.ctx.db)[1] is not None, column
        with world.ctx.db.transaction() as conn:
            conn.exec_driver_sql(
                f"UPDATE audit_log SET {column} = :v WHERE seq = 2".replace(
                    ":v", "?" if world.ctx.db.is_sqlite else "%(v)s"
                ),
                (original,) if world.ctx.db.is_sqlite else {"v": original},
            )
        assert verify_audit(world.ctx.db)[1] is None, column


def test_deleting_the_tail_is_detected(world: World) -> None:
    produce_entries(world)
    with world.ctx.db.transaction() as conn:
        last = conn.exec_driver_sql("SELECT max(seq) FROM audit_log").scalar_one()
        conn.exec_driver_sql(f"DELETE FROM audit_log WHERE seq = {last}")
    done = run_verify(world)
    assert done.returncode != 0
    assert "anchor" in done.stderr


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_file_tampered_directly(world: World) -> None:
    """The contract's promise about editing the SQLite file itself."""
    assert world.ctx.db.is_sqlite
    produce_entries(world)
    path = world.ctx.db.url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE audit_log SET actor = 'someone' WHERE seq = 1")
    assert run_verify(world).returncode != 0
