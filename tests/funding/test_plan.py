"""The money arithmetic of automatic top-ups at its edges (pure: gateway.funding.plan)."""

from __future__ import annotations

from gateway.consent.rules import AutoTopUp
from gateway.funding.plan import BALANCE, CREDIT_LINE, Draw, Source, available, draw_order, plan

AUTO = AutoTopUp(below_minor=1_000, to_minor=5_000)


def src(id: str, priority: int, seq: int, balance: int = 0, floor: int = 0) -> Source:
    return Source(id, "own_1", id, BALANCE, "EUR", priority, seq, floor, None, None, balance)


def test_available_is_the_balance_above_the_floor_and_never_negative() -> None:
    assert available(src("a", 1, 1, balance=1_000, floor=1_000)) == 0  # exactly at the floor
    assert available(src("a", 1, 1, balance=1_001, floor=1_000)) == 1
    assert available(src("a", 1, 1, balance=999, floor=1_000)) == 0
    line = Source("l", "own_1", "l", CREDIT_LINE, "EUR", 1, 1, 0, 5_000, 0, -5_000)
    assert available(line) == 0  # a credit line exactly at its limit


def test_draw_order_is_priority_then_creation() -> None:
    sources = [src("late", 100, 3), src("c", 100, 1), src("first", 1, 9), src("d", 100, 2)]
    assert [s.id for s in draw_order(sources)] == ["first", "c", "d", "late"]


def test_no_top_up_when_the_wallet_covers_and_stays_at_or_above_below() -> None:
    assert plan(2_000, 1_000, AUTO, [("a", 10_000)]) == []  # leaves exactly `below`
    assert plan(500, 1_000, None, [("a", 10_000)]) is None  # no auto_top_up: short is short
    assert plan(1_000, 1_000, None, []) == []


def test_top_up_brings_available_after_the_payment_up_to_to() -> None:
    assert plan(1_999, 1_000, AUTO, [("a", 10_000)]) == [Draw("a", 4_001)]  # 999 < below
    assert plan(0, 1_000, AUTO, [("a", 10_000)]) == [Draw("a", 6_000)]


def test_sources_are_drawn_in_order_each_up_to_what_it_has() -> None:
    drawn = plan(0, 1_000, AUTO, [("a", 2_500), ("b", 0), ("c", 10_000), ("d", 9)])
    assert drawn == [Draw("a", 2_500), Draw("c", 3_500)]


def test_as_far_as_the_sources_allow_when_the_payment_itself_is_covered() -> None:
    assert plan(300, 1_000, AUTO, [("a", 700)]) == [Draw("a", 700)]  # exactly covered
    assert plan(300, 1_000, AUTO, [("a", 699)]) is None  # one short
    assert plan(300, 1_000, AUTO, [("a", 400), ("b", 300)]) == [Draw("a", 400), Draw("b", 300)]
    assert plan(1_500, 1_000, AUTO, [("a", 0)]) == []  # below `below`, nothing to add: pays
