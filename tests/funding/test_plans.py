"""Contract section 8: a plan opened through `open_plan` in a decision's transaction, as the
approval path opens it, on a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway.errors import Conflict
from gateway.funding.collect import collect_due
from tests.funding.plans_support import (
    advance_days,
    at,
    balance_of,
    books,
    fees_of,
    instalment_rows,
    owner_with_line,
    top_up,
)
from tests.support.world import World


def test_opening_a_plan_lends_the_amount_charges_the_fee_and_schedules_the_total(
    world: World,
) -> None:
    owner = owner_with_line(world, limit=100_000, apr_bps=1_000)
    opened_at = at(world)
    plan_id = owner.open(100_000 - 2_466, count=3, apr_bps=1_000, interval_days=30)
    # fee(97,534, 10 %, 3 x 30 days) = 2,404.95... -> 2,405
    fee = (97_534 * 1_000 * 3 * 30 + 1_825_000) // 3_650_000
    assert fee == 2_405
    total = 97_534 + fee
    assert balance_of(world, owner.line["id"]) == -total
    assert owner.source(owner.line["id"])["available"] == 100_000 - total
    assert fees_of(world) == fee
    assert owner.car.wallet()["balance"] == 0  # lent in, then paid out to the shop
    assert balance_of(world, owner.shop["id"]) == 97_534
    (plan,) = owner.plans()
    each = total // 3
    assert plan == {
        "id": plan_id,
        "payment_id": plan["payment_id"],
        "device_id": owner.car.id,
        "source": owner.line["id"],
        "amount": 97_534,
        "fee": fee,
        "total": total,
        "currency": "EUR",
        "status": "active",
        "opened_at": plan["opened_at"],
        "instalments": [
            {"n": n, "due": plan["instalments"][n - 1]["due"], "amount": amount,
             "status": "scheduled"}
            for n, amount in ((1, each), (2, each), (3, total - 2 * each))
        ],
    }  # fmt: skip
    rows = instalment_rows(world, plan_id)
    for row in rows:
        expected = opened_at + timedelta(days=30 * row["n"])
        assert abs(row["due_at"] - expected) < timedelta(seconds=5)
        assert row["next_try_at"] == row["due_at"]
    assert books(world) == []


def test_a_line_exactly_at_its_limit_lends_and_one_minor_unit_more_is_refused(
    world: World,
) -> None:
    owner = owner_with_line(world, limit=10_000, apr_bps=0)
    with pytest.raises(Conflict) as refused:
        owner.open(10_001, count=2, apr_bps=0)
    assert refused.value.reason == "credit_limit_exceeded"
    assert balance_of(world, owner.line["id"]) == 0 and owner.plans() == []
    owner.open(10_000, count=2, apr_bps=0)  # exactly the limit, no fee
    assert owner.source(owner.line["id"])["available"] == 0
    assert fees_of(world) == 0
    with pytest.raises(Conflict) as again:
        owner.open(2, count=2, apr_bps=0)  # one more instalment of 1 each: beyond the limit
    assert again.value.reason == "credit_limit_exceeded"
    assert balance_of(world, owner.line["id"]) == -10_000
    assert books(world) == []


def test_the_fee_counts_against_the_limit(world: World) -> None:
    owner = owner_with_line(world, limit=10_000, apr_bps=10_000)
    # 9,900 at 100 % for 2 x 30 days: fee 1,627 -> total 11,527 > 10,000
    with pytest.raises(Conflict):
        owner.open(9_900, count=2, apr_bps=10_000)
    owner.open(8_000, count=2, apr_bps=10_000)  # fee 1,315 -> 9,315
    assert balance_of(world, owner.line["id"]) == -9_315 and fees_of(world) == 1_315
    assert books(world) == []


def test_a_fee_of_exactly_half_a_cent_rounds_up_and_one_below_half_rounds_to_nothing(
    world: World,
) -> None:
    owner = owner_with_line(world, limit=100_000, apr_bps=500)
    half = owner.open(25, count=2, apr_bps=500, interval_days=73)  # 25 x 5 % x 146 days = 0.5
    shown = next(p for p in owner.plans() if p["id"] == half)
    assert (shown["fee"], shown["total"]) == (1, 26)
    assert [i["amount"] for i in shown["instalments"]] == [13, 13]
    assert fees_of(world) == 1
    nothing = owner.open(10_000, count=2, apr_bps=1, interval_days=7)  # 0.038: no fee at all
    shown = next(p for p in owner.plans() if p["id"] == nothing)
    assert (shown["fee"], shown["total"]) == (0, 10_000)
    assert fees_of(world) == 1  # no fee transfer for a fee of 0
    assert balance_of(world, owner.line["id"]) == -(26 + 10_000)
    assert books(world) == []


def test_the_last_instalment_takes_the_remainder(world: World) -> None:
    owner = owner_with_line(world, apr_bps=0)
    plan_id = owner.open(1_000, count=3, apr_bps=0)
    assert [i["amount_minor"] for i in instalment_rows(world, plan_id)] == [333, 333, 334]
    seven = owner.open(100, count=7, apr_bps=0)
    assert [i["amount_minor"] for i in instalment_rows(world, seven)] == [14] * 6 + [16]
    assert books(world) == []


def test_a_total_below_the_count_starts_with_instalments_of_zero_that_move_nothing(
    world: World,
) -> None:
    owner = owner_with_line(world, apr_bps=0)
    plan_id = owner.open(3, count=4, apr_bps=0, interval_days=7)  # the contract's formula
    assert [i["amount_minor"] for i in instalment_rows(world, plan_id)] == [0, 0, 0, 3]
    advance_days(world, 7)
    assert collect_due(world.ctx) == 1  # paid, though no source holds anything
    assert [i["status"] for i in owner.plan(plan_id)["instalments"]][:2] == ["paid", "scheduled"]
    top_up(owner, owner.everyday["id"], 3, "a")
    repaid = owner.repay(plan_id)
    assert repaid.status_code == 200 and repaid.json()["status"] == "repaid"
    assert (
        balance_of(world, owner.line["id"]) == 0
        and owner.source(owner.everyday["id"])["balance"] == 0
    )
    assert books(world) == []
