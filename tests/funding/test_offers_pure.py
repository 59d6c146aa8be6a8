"""The instalment offer's conditions of contract section 8 at their edges (pure)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from gateway.funding.offers import (
    Policy,
    Terms,
    accepted_in_advance,
    eligible,
    keeps_too_little,
    make_offer,
    offer_from_json,
    offer_to_json,
    policy_from_row,
    withdrawn,
)

T0 = datetime(2026, 11, 29, 10, 0, 0, 123456, tzinfo=UTC)
POLICY = Policy(
    owner_id="own_1",
    source_id="fs_line",
    min_amount_minor=100,
    max_amount_minor=50_000,
    counts=(6, 3),
    interval_days=30,
    keep_at_least_minor=0,
    categories=frozenset({"maintenance"}),
    auto_accept_up_to_minor=10_000,
)


def is_eligible(policy: Policy = POLICY, **changes: object) -> bool:
    terms: dict[str, object] = {
        "is_pay": True,
        "amount_minor": 1_000,
        "currency": "EUR",
        "category": "maintenance",
        "line_currency": "EUR",
        **changes,
    }
    return eligible(policy, **terms)  # type: ignore[arg-type]


def test_only_pays_within_amounts_categories_and_the_lines_currency_are_eligible() -> None:
    assert is_eligible() and is_eligible(amount_minor=100) and is_eligible(amount_minor=50_000)
    assert not is_eligible(is_pay=False)  # a hold
    assert not is_eligible(amount_minor=99) and not is_eligible(amount_minor=50_001)
    assert not is_eligible(category="fuel")
    assert is_eligible(replace(POLICY, categories=None), category="gambling")
    assert not is_eligible(currency="USD")


def test_keep_at_least_is_strictly_below_the_sum_of_balances_less_the_amount() -> None:
    assert not keeps_too_little(6_000, [5_000], 1_000, 10_000)  # exactly kept
    assert keeps_too_little(6_000, [5_000], 1_001, 10_000)
    assert keeps_too_little(0, [], 1, 1) and not keeps_too_little(0, [], 1, -1)
    assert not keeps_too_little(-500, [3_000, 500], 1_000, 2_000)


def test_options_are_the_counts_the_line_covers_ascending() -> None:
    offer = make_offer(POLICY, 10_000, 1_200, 10_592, T0)
    assert offer is not None and [o.count for o in offer.options] == [3, 6]
    offer = make_offer(POLICY, 10_000, 1_200, 10_591, T0)
    assert offer is not None and [o.count for o in offer.options] == [3]
    assert make_offer(POLICY, 10_000, 1_200, 10_295, T0) is None
    assert offer.options[0].first_due == T0 + timedelta(days=30)


def test_agreed_in_advance_up_to_the_limit_on_the_smallest_count_unless_step_5_asks() -> None:
    offer = make_offer(POLICY, 10_000, 1_200, 99_999, T0)
    assert offer is not None
    agreed = accepted_in_advance(POLICY, offer, 10_000, step5_asks=False)
    assert agreed == Terms("fs_line", 3, 1_200, 30)
    assert accepted_in_advance(POLICY, offer, 10_001, step5_asks=False) is None
    assert accepted_in_advance(POLICY, offer, 10_000, step5_asks=True) is None
    only_six = make_offer(replace(POLICY, counts=(6,)), 10_000, 1_200, 99_999, T0)
    assert only_six is not None
    assert accepted_in_advance(POLICY, only_six, 10_000, step5_asks=False) is None
    none_agreed = replace(POLICY, auto_accept_up_to_minor=0)
    assert accepted_in_advance(none_agreed, offer, 1, step5_asks=False) is None


def test_an_offer_is_withdrawn_without_its_policy_or_when_it_names_another_line() -> None:
    assert withdrawn(None, "fs_line")
    assert withdrawn(replace(POLICY, source_id="fs_other"), "fs_line")
    assert not withdrawn(replace(POLICY, counts=(12,)), "fs_line")


def test_a_policy_row_reads_back() -> None:
    row = {
        "owner_id": "own_1",
        "source_id": "fs_line",
        "min_amount_minor": 100,
        "max_amount_minor": 50_000,
        "counts_json": "[6, 3]",
        "interval_days": 30,
        "keep_at_least_minor": 0,
        "categories_json": '["maintenance"]',
        "auto_accept_up_to_minor": 10_000,
    }
    assert policy_from_row(row) == POLICY
    assert policy_from_row({**row, "categories_json": None}).categories is None


@given(
    amount=st.integers(1, 10**12),
    apr=st.integers(0, 10_000),
    counts=st.sets(st.integers(2, 24), min_size=1, max_size=23),
    interval=st.integers(7, 92),
    line=st.integers(0, 10**13),
)
def test_the_offer_reads_back_from_its_json(
    amount: int, apr: int, counts: set[int], interval: int, line: int
) -> None:
    policy = replace(POLICY, counts=tuple(counts), interval_days=interval)
    offer = make_offer(policy, amount, apr, line, T0)
    if offer is None:
        return
    shown = json.loads(json.dumps(offer_to_json(offer)))
    assert offer_from_json(shown) == offer
    for option in shown["options"]:
        assert option["total"] <= line and option["total"] == amount + option["fee"]
        last = option["total"] - (option["count"] - 1) * option["instalment_amount"]
        assert option["instalment_amount"] <= last < option["instalment_amount"] + option["count"]
