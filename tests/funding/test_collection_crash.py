"""Contract section 8: a crash during collection never collects an instalment twice, on a real
database (SQLite and PostgreSQL): a collector process killed with SIGKILL after moving the money
but before its commit, and a collection rolled back in the middle, are collected once after."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.funding.collect import collect_due, collect_instalment
from tests.funding.plans_support import (
    advance_days,
    balance_of,
    instalment_rows,
    owner_with_line,
    top_up,
)
from tests.support.funding import source
from tests.support.world import World
from wallet.schema import transfers

ROOT = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("books_balance")


class Crash(Exception):
    """Raised inside the collection's transaction, after the money moved."""


def collect_transfers(world: World) -> list[Any]:
    with world.ctx.db.read() as conn:
        return list(conn.execute(transfers.select().where(transfers.c.kind == "collect")))


def test_a_collector_killed_before_its_commit_moves_nothing_and_the_next_collects_once(
    world: World,
) -> None:
    owner = owner_with_line(world, apr_bps=0)
    plan_id = owner.open(1_000, count=2, apr_bps=0, interval_days=7)
    top_up(owner, owner.everyday["id"], 2_000, "a")
    advance_days(world, 7)
    command = [
        *(sys.executable, "-m", "tests.funding.crash_collector", world.ctx.db.url),
        *(plan_id, "1", world.ctx.clock().isoformat()),
    ]
    with subprocess.Popen(
        command, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    ) as collector:
        try:
            said = collector.stdout.readline() if collector.stdout else ""
            assert said.split() == ["collected", "1", "500"], said  # moved, not committed
            assert collect_transfers(world) == []  # nobody else sees it
        finally:
            os.kill(collector.pid, signal.SIGKILL)
            collector.wait()
    assert collector.returncode == -signal.SIGKILL
    assert owner.source(owner.everyday["id"])["balance"] == 2_000
    assert instalment_rows(world, plan_id)[0]["status"] == "scheduled"
    assert collect_due(world.ctx) == 1
    assert collect_due(world.ctx) == 0
    assert [row.amount_minor for row in collect_transfers(world)] == [500]
    assert owner.source(owner.everyday["id"])["balance"] == 1_500
    assert balance_of(world, owner.line["id"]) == -500


def test_a_collection_rolled_back_midway_is_collected_once_when_run_again(
    world: World,
) -> None:
    owner = owner_with_line(world, apr_bps=0)
    plan_id = owner.open(1_000, count=2, apr_bps=0, interval_days=7)
    top_up(owner, owner.everyday["id"], 300, "a")
    savings = source(world, owner.car.owner, name="savings", priority=50)
    top_up(owner, savings["id"], 200, "s")  # a second source: the collection is two transfers
    advance_days(world, 7)
    now = world.ctx.clock()
    with pytest.raises(Crash), world.ctx.db.transaction() as conn:
        assert collect_instalment(conn, plan_id, 1, now) == 1
        raise Crash
    assert collect_transfers(world) == []
    assert instalment_rows(world, plan_id)[0]["status"] == "scheduled"
    assert collect_due(world.ctx) == 1
    assert collect_due(world.ctx) == 0
    assert sorted(row.amount_minor for row in collect_transfers(world)) == [200, 300]
    assert owner.source(owner.everyday["id"])["balance"] == 0
    assert owner.source(savings["id"])["balance"] == 0
