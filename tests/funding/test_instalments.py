"""The instalment arithmetic of contract section 8 at its edges (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from gateway.funding.instalments import amounts, fee, options, schedule

T0 = datetime(2026, 11, 29, 10, 0, tzinfo=UTC)


def test_fees_round_halves_up_and_are_exact_integers() -> None:
    assert fee(100_000, 1_000, 3, 30) == 2_466  # 2,465.75...
    assert fee(73, 10_000, 1, 25) == 5  # exactly 5.0
    assert fee(146, 10_000, 1, 125) == 50  # 50.0: no rounding
    assert fee(1, 1, 1, 7) == 0  # 7 / 3,650,000 rounds to nothing
    assert fee(1_825, 10_000, 1, 73) == 365
    assert fee(25, 1_000, 1, 73) == 1  # exactly 0.5 rounds up
    assert fee(1, 9_999, 2, 91) == 0  # 0.4986 rounds down
    assert fee(75, 1_000, 1, 73) == 2  # exactly 1.5 rounds up
    assert fee(10**12, 10_000, 24, 92) == 6_049_315_068_493  # ...493.15: big and exact


def test_the_last_instalment_takes_the_remainder() -> None:
    assert amounts(1_000, 3) == [333, 333, 334]
    assert amounts(1_001, 2) == [500, 501]
    assert amounts(24, 24) == [1] * 24


@given(st.integers(24, 10**12), st.integers(2, 24))
def test_instalments_always_sum_to_the_total(total: int, count: int) -> None:
    parts = amounts(total, count)
    assert sum(parts) == total and len(parts) == count
    assert 0 <= parts[-1] - parts[0] < count


def test_options_are_those_the_line_covers_with_the_first_due_one_interval_later() -> None:
    offered = options(10_000, 1_200, [12, 3, 6], 30, 10_600, T0)
    fees = {o.count: o.fee_minor for o in offered}
    assert fees == {3: 296, 6: 592}  # 12 would total 11,184: beyond the line
    for o in offered:
        assert o.total_minor == 10_000 + o.fee_minor
        assert o.instalment_amount_minor == o.total_minor // o.count
        assert o.first_due == T0 + timedelta(days=30)
    exact = options(10_000, 0, [2], 7, 10_000, T0)  # the line exactly covers the total
    assert [(o.count, o.total_minor) for o in exact] == [(2, 10_000)]
    assert options(10_000, 0, [2], 7, 9_999, T0) == []


def test_a_schedule_is_due_every_interval_from_the_plan_opening() -> None:
    plan = schedule(1_000, 3, 14, T0)
    assert [(i.n, i.due, i.amount_minor) for i in plan] == [
        (1, T0 + timedelta(days=14), 333),
        (2, T0 + timedelta(days=28), 333),
        (3, T0 + timedelta(days=42), 334),
    ]
