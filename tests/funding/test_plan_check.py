"""`kym ledger check` for instalment plans finds what breaks their invariants: instalments that
do not sum to the total, an instalment marked paid without its collection, a status its
instalments contradict, a fee the fee account does not hold (SQLite and PostgreSQL)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import Connection

from gateway.context import Context
from gateway.funding import plan_store
from gateway.funding.check import check_sources
from gateway.funding.collect import collect_due
from tests.funding.plans_support import advance_days, books, owner_with_line, top_up
from tests.support.cli import kym
from tests.support.world import World
from wallet.check import check

_i, _p = plan_store.instalments.c, plan_store.plans.c


def test_sound_plans_pass_and_each_tampering_is_reported(world: World, ctx: Context) -> None:
    owner = owner_with_line(world, apr_bps=1_000)
    plans = [owner.open(3_000, count=3) for _ in range(4)]
    top_up(owner, owner.everyday["id"], 100_000, "a")
    advance_days(world, 30)
    assert collect_due(ctx) == 4
    assert books(world) == []
    short, unpaid, wrong_status, fee = plans

    def tamper(conn: Connection) -> None:
        change = sa.update(plan_store.instalments)
        conn.execute(change.where(_i.plan_id == short, _i.n == 3).values(amount_minor=1))
        conn.execute(
            change.where(_i.plan_id == unpaid, _i.n == 2).values(status="paid", collection_id="x")
        )
        conn.execute(
            sa.update(plan_store.plans).where(_p.id == wrong_status).values(status="repaid")
        )
        conn.execute(
            sa.update(plan_store.plans)
            .where(_p.id == fee)
            .values(fee_minor=_p.fee_minor + 1, total_minor=_p.total_minor + 1)
        )

    ctx.db.run(tamper)
    with ctx.db.read() as conn:
        assert check(conn) == []  # the double entry itself still balances
        found = {(b.rule, b.subject) for b in check_sources(conn)}
    line, fees = owner.line["id"], "@fees/EUR"
    assert found == {
        ("plan", short),  # instalments no longer sum to the total
        ("instalment", unpaid),  # paid by a collection that moved nothing
        ("plan", wrong_status),  # repaid with unpaid instalments
        ("plan", fee),  # the schedule and the fee transfer disagree with the new fee
        ("credit_line", line),  # the line owes what the plans no longer say
        ("fees", fees),  # the fee account lacks the extra fee
    }


def test_kym_ledger_check_reports_a_broken_plan(world: World, ctx: Context) -> None:
    owner = owner_with_line(world, apr_bps=1_000)
    plan_id = owner.open(3_000, count=3)
    top_up(owner, owner.everyday["id"], 5_000, "a")
    advance_days(world, 30)
    assert collect_due(ctx) == 1
    where = ("--data-dir", str(ctx.settings.data_dir), "--database-url", ctx.db.url)
    sound = kym("ledger", "check", *where)
    assert sound.returncode == 0, sound.stdout + sound.stderr

    def tamper(conn: Connection) -> None:
        change = sa.update(plan_store.instalments).where(_i.plan_id == plan_id, _i.n == 2)
        conn.execute(change.values(status="paid", collection_id=f"{plan_id}.2"))

    ctx.db.run(tamper)
    broken = kym("ledger", "check", *where)
    assert broken.returncode == 1
    assert f"instalment: {plan_id}" in broken.stdout + broken.stderr
