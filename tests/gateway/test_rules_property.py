"""Random rules, mandates and orders against a reference model written from the contract's text.

The reference reads the rules as the owner wrote them (the contract's JSON), keeps the history
of approved payments, and decides each order from scratch: it groups payments into periods by
comparing local calendar dates (ISO weeks), and tests active hours with naive wall-clock
intervals. The engine under test gets only counters per period key, fed with what it approved.
"""

from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import event, given, settings
from hypothesis import strategies as st

from gateway.consent.mandates import Mandate, covering_mandate, decide_consent
from gateway.consent.periods import PERIODS, period_key, period_keys, period_start
from gateway.consent.rules import (
    Limit,
    OrderTerms,
    Payee,
    Usage,
    evaluate,
    is_active_time,
    rules_to_json,
)
from gateway.errors import RuleViolation
from gateway.http.schemas import RulesIn

PAYER = "dev_car"
PAYEES = {
    payee.id: payee
    for payee in (
        Payee("mer_fuel", "EUR", "fuel", active=True),
        Payee("mer_park", "EUR", "parking", active=True),
        Payee("dev_fridge", "EUR", None, active=True),
        Payee("dev_off", "EUR", "retail", active=False),
        Payee("mer_dollar", "USD", "retail", active=True),
        Payee(PAYER, "EUR", None, active=True),
    )
}
PAYEE_IDS = [*PAYEES, "mer_ghost"]
CATEGORIES = ["fuel", "parking", "retail", "other", "gambling"]
PERIOD_NAMES = ["day", "week", "month", "year"]
DAY_NAMES = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
TIMEZONES = ["Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "UTC"]
STARTS = [
    datetime(2026, 3, 26, tzinfo=UTC),  # Berlin and New York DST starts
    datetime(2026, 10, 22, tzinfo=UTC),  # Berlin DST ends
    datetime(2026, 12, 24, tzinfo=UTC),  # year and ISO week boundaries
    datetime(2027, 1, 29, tzinfo=UTC),  # a month boundary
]


def money(most: int) -> st.SearchStrategy[int]:
    """Amounts, often on a coarse grid so that sums hit limits exactly."""
    return st.one_of(st.integers(1, most // 250).map(lambda k: k * 250), st.integers(1, most))


def clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


windows = st.builds(
    lambda days, start, length: {
        "days": days,
        "from": clock(start * 15),
        "to": clock((start + length) % 97 * 15),
    },
    st.lists(st.sampled_from(DAY_NAMES), min_size=1, max_size=7, unique=True),
    st.integers(0, 96),
    st.integers(1, 96),
)
limits = st.lists(
    st.fixed_dictionaries({"period": st.sampled_from(PERIOD_NAMES), "amount": money(8000)}),
    max_size=3,
)
counts = st.lists(
    st.fixed_dictionaries({"period": st.sampled_from(PERIOD_NAMES), "count": st.integers(1, 5)}),
    max_size=2,
)
rule_bodies = st.fixed_dictionaries(
    {},
    optional={
        "currency": st.sampled_from(["EUR", "EUR", "EUR", "USD"]),
        "max_amount": money(4000),
        "limits": limits,
        "max_payments": counts,
        "allowed_categories": st.lists(st.sampled_from(CATEGORIES), max_size=4, unique=True),
        "blocked_categories": st.lists(st.sampled_from(CATEGORIES), max_size=2, unique=True),
        "allowed_payees": st.lists(st.sampled_from(PAYEE_IDS), max_size=5, unique=True),
        "blocked_payees": st.lists(st.sampled_from(PAYEE_IDS), max_size=2, unique=True),
        "approval_above": money(4000),
        "approval_ttl_seconds": st.integers(1, 86400),
        "active_hours": st.fixed_dictionaries({"windows": st.lists(windows, max_size=3)}),
    },
)
# Mostly payable EUR payees and small amounts, so that limits and counts come into play.
payee_ids = st.sampled_from(["mer_fuel"] * 8 + ["mer_park"] * 5 + ["dev_fridge"] * 4 + PAYEE_IDS)
hours_from_start = st.integers(-48, 24 * 20).map(lambda h: timedelta(hours=h))
mandates = st.lists(
    st.fixed_dictionaries(
        {
            "max_amount": money(4000),
            "limits": limits,
            "active": st.sampled_from([True, True, True, False]),
        },
        optional={
            "payee": payee_ids,
            "category": st.sampled_from(CATEGORIES),
            "valid_from": hours_from_start,
            "valid_until": hours_from_start,
        },
    ),
    max_size=3,
).map(lambda ms: [{**m, "id": f"man_{i}"} for i, m in enumerate(ms)])
# Times advance on a grid of quarter hours (to land on midnights and on windows' edges), and
# each order may sit a little off the grid, a second early included.
orders = st.lists(
    st.tuples(
        st.one_of(st.integers(0, 8), st.integers(0, 4 * 96)),
        st.one_of(st.sampled_from([0, 0, -1]), st.integers(0, 899)),
        payee_ids,
        st.one_of(money(1500), money(4500)),
        st.sampled_from(["EUR"] * 9 + ["USD"]),
    ),
    min_size=1,
    max_size=30,
)
# Rules on amounts only, so that many orders pass the other rules and reach the limits.
amount_bodies = st.fixed_dictionaries(
    {"limits": limits},
    optional={
        "max_amount": money(4000),
        "max_payments": counts,
        "approval_above": money(4000),
    },
)
hours_bodies = st.fixed_dictionaries(
    {"active_hours": st.fixed_dictionaries({"windows": st.lists(windows, max_size=3)})},
    optional={"limits": limits, "approval_above": money(4000)},
)
bodies: st.SearchStrategy[dict[str, Any]] = st.one_of(
    st.just({}), amount_bodies, hours_bodies, rule_bodies
)


# The reference model


def bucket(period: str, at: datetime, tz: ZoneInfo) -> Any:
    local = at.astimezone(tz).date()
    return {
        "day": local,
        "week": local.isocalendar()[:2],
        "month": (local.year, local.month),
        "year": local.year,
    }[period]


def minutes(hh_mm: str) -> int:
    return int(hh_mm[:2]) * 60 + int(hh_mm[3:])


def in_active_hours(windows: list[dict[str, Any]], now: datetime, tz: ZoneInfo) -> bool:
    wall = now.astimezone(tz).replace(tzinfo=None)
    for window in windows:
        for days_back in (0, 1):
            day: date = wall.date() - timedelta(days=days_back)
            if DAY_NAMES[day.weekday()] not in window["days"]:
                continue
            start = datetime.combine(day, time()) + timedelta(minutes=minutes(window["from"]))
            end = datetime.combine(day, time()) + timedelta(minutes=minutes(window["to"]))
            if end < start:
                end += timedelta(days=1)
            if start <= wall < end:
                return True
    return False


def within_limits(limits: list[dict[str, Any]], amount: int, spent: Any) -> bool:
    return all(spent(limit["period"]) + amount <= limit["amount"] for limit in limits)


def reference_decision(
    body: dict[str, Any],
    mandates: list[dict[str, Any]],
    order: tuple[str, int, str],
    history: list[tuple[datetime, int, str | None]],
    now: datetime,
    tz: ZoneInfo,
) -> tuple[str, str | None]:
    payee_id, amount, currency = order
    payee = PAYEES.get(payee_id)
    if payee is None or not payee.active:
        return "unknown_payee", None
    if payee_id == PAYER:
        return "payee_not_allowed", None
    if (
        currency != "EUR"
        or payee.currency != currency
        or body.get("currency", currency) != currency
    ):
        return "currency_not_allowed", None
    category = payee.category or "other"

    def spent(period: str, mandate_id: str | None = None) -> int:
        return sum(
            a
            for t, a, m in history
            if bucket(period, t, tz) == bucket(period, now, tz) and mandate_id in (None, m)
        )

    def paid(period: str) -> int:
        return sum(1 for t, _, _ in history if bucket(period, t, tz) == bucket(period, now, tz))

    if body:
        if category not in body.get("allowed_categories", CATEGORIES):
            return "category_not_allowed", None
        if category in body.get("blocked_categories", []):
            return "category_not_allowed", None
        if payee_id not in body.get("allowed_payees", PAYEE_IDS):
            return "payee_not_allowed", None
        if payee_id in body.get("blocked_payees", []):
            return "payee_not_allowed", None
        if "active_hours" in body and not in_active_hours(body["active_hours"]["windows"], now, tz):
            return "outside_active_hours", None
        if amount > body.get("max_amount", amount):
            return "amount_over_limit", None
        if not within_limits(body.get("limits", []), amount, spent):
            return "period_limit_exceeded", None
        if any(paid(c["period"]) + 1 > c["count"] for c in body.get("max_payments", [])):
            return "payment_count_exceeded", None
        if amount <= body.get("approval_above", amount):
            return "approved", None
    return reference_mandate(mandates, payee_id, category, amount, now, spent)


def reference_mandate(
    mandates: list[dict[str, Any]],
    payee_id: str,
    category: str,
    amount: int,
    now: datetime,
    spent: Any,
) -> tuple[str, str | None]:
    """A mandate naming both covers first, then one naming the payee, the category, neither."""
    for wanted in ({"payee", "category"}, {"payee"}, {"category"}, set()):
        for m in mandates:
            if {"payee", "category"} & m.keys() != wanted or not m["active"]:
                continue
            if m.get("payee", payee_id) != payee_id or m.get("category", category) != category:
                continue
            if amount > m["max_amount"]:
                continue
            if ("valid_from" in m and now < m["valid_from"]) or (
                "valid_until" in m and now >= m["valid_until"]
            ):
                continue
            if within_limits(m["limits"], amount, lambda p, m=m: spent(p, m["id"])):
                return "approved", m["id"]
    return "pending_approval", None


# The engine under test, fed back with what it approved


def to_mandate(m: dict[str, Any]) -> Mandate:
    return Mandate(
        id=m["id"],
        payee=m.get("payee"),
        category=m.get("category"),
        max_amount_minor=m["max_amount"],
        limits=tuple(Limit(x["period"], x["amount"]) for x in m["limits"]),
        valid_from=m.get("valid_from"),
        valid_until=m.get("valid_until"),
        active=m["active"],
    )


def add(counters: dict[str, Usage], now: datetime, tz: ZoneInfo, amount: int) -> None:
    for key in period_keys(now, tz).values():
        usage = counters.get(key, Usage())
        counters[key] = Usage(usage.spent_minor + amount, usage.count + 1)


@settings(max_examples=400, deadline=None)
@given(
    body=bodies,
    mandate_bodies=mandates,
    steps=orders,
    tz_name=st.sampled_from(TIMEZONES),
    start=st.sampled_from(STARTS),
)
def test_decisions_match_the_reference_and_approved_spending_stays_within_limits(
    body: dict[str, Any],
    mandate_bodies: list[dict[str, Any]],
    steps: list[tuple[int, int, str, int, str]],
    tz_name: str,
    start: datetime,
) -> None:
    tz = ZoneInfo(tz_name)
    rules = RulesIn.model_validate(body).to_rules()
    for m in mandate_bodies:
        for field in ("valid_from", "valid_until"):
            if field in m:
                m[field] = start + m[field]
    engine_mandates = [to_mandate(m) for m in mandate_bodies]
    counters: dict[str, Usage] = {}
    mandate_counters: dict[str, dict[str, Usage]] = {m["id"]: {} for m in mandate_bodies}
    history: list[tuple[datetime, int, str | None]] = []
    grid = start
    for quarter_hours, off_grid_s, payee_id, amount, currency in steps:
        grid += timedelta(minutes=15 * quarter_hours)
        now = grid + timedelta(seconds=off_grid_s)
        terms = OrderTerms(PAYER, "EUR", payee_id, amount, currency)
        payee = PAYEES.get(payee_id)
        try:
            evaluate(terms, payee, rules, counters, now, tz)
            assert payee is not None
            consent = decide_consent(
                terms, payee, rules, engine_mandates, mandate_counters, now, tz
            )
        except RuleViolation as refusal:
            decision: tuple[str, str | None] = (refusal.reason, None)
        else:
            mandate_id = None if consent.mandate is None else consent.mandate.id
            status = "pending_approval" if consent.needs_approval else "approved"
            decision = (status, mandate_id)
        expected = reference_decision(
            body, mandate_bodies, (payee_id, amount, currency), history, now, tz
        )
        assert decision == expected, (now.astimezone(tz).isoformat(), terms)
        event(decision[0] if decision[1] is None else "approved by a mandate")
        if decision[0] == "approved":
            add(counters, now, tz, amount)
            if decision[1] is not None:
                add(mandate_counters[decision[1]], now, tz, amount)
            history.append((now, amount, decision[1]))
    assert_within_limits(body, mandate_bodies, history, tz)


def assert_within_limits(
    body: dict[str, Any],
    mandate_bodies: list[dict[str, Any]],
    history: list[tuple[datetime, int, str | None]],
    tz: ZoneInfo,
) -> None:
    def totals(period: str, mandate_id: str | None = None) -> tuple[dict[Any, int], dict[Any, int]]:
        spent: dict[Any, int] = {}
        count: dict[Any, int] = {}
        for t, amount, m in history:
            if mandate_id in (None, m):
                key = bucket(period, t, tz)
                spent[key] = spent.get(key, 0) + amount
                count[key] = count.get(key, 0) + 1
        return spent, count

    for limit in body.get("limits", []):
        assert all(s <= limit["amount"] for s in totals(limit["period"])[0].values())
    for cap in body.get("max_payments", []):
        assert all(c <= cap["count"] for c in totals(cap["period"])[1].values())
    if "max_amount" in body:
        assert all(amount <= body["max_amount"] for _, amount, _ in history)
    for m in mandate_bodies:
        for limit in m["limits"]:
            spent = totals(limit["period"], m["id"])[0]
            assert all(s <= limit["amount"] for s in spent.values())


@settings(max_examples=200, deadline=None)
@given(body=rule_bodies)
def test_rules_read_back_from_json_are_the_same_rules(body: dict[str, Any]) -> None:
    rules = RulesIn.model_validate(body).to_rules()
    assert RulesIn.model_validate(rules_to_json(rules)).to_rules() == rules


# Focused properties: each rule against its reference at the edges, many times per example

quarter_hours = st.integers(0, 96 * 20)
off_grid_s = st.one_of(st.sampled_from([0, 0, -1]), st.integers(0, 899))


def moment(start: datetime, quarters: int, off_s: int) -> datetime:
    return start + timedelta(minutes=15 * quarters, seconds=off_s)


@settings(max_examples=200, deadline=None)
@given(
    hours=st.lists(windows, max_size=3),
    tz_name=st.sampled_from(TIMEZONES),
    start=st.sampled_from(STARTS),
    times=st.lists(st.tuples(quarter_hours, off_grid_s), min_size=1, max_size=30),
)
def test_active_hours_match_wall_clock_intervals(
    hours: list[dict[str, Any]],
    tz_name: str,
    start: datetime,
    times: list[tuple[int, int]],
) -> None:
    tz = ZoneInfo(tz_name)
    rules = RulesIn.model_validate({"active_hours": {"windows": hours}}).to_rules()
    assert rules is not None and rules.active_hours is not None
    edges = [
        datetime.combine(start.date() + timedelta(days=d), time(), tz)
        + timedelta(minutes=minutes(w[edge]), seconds=off_s)
        for d in range(8)
        for w in hours
        for edge in ("from", "to")
        for off_s in (-1, 0)
    ]
    for now in edges + [moment(start, quarters, off_s) for quarters, off_s in times]:
        assert is_active_time(rules.active_hours, now, tz) == in_active_hours(hours, now, tz)


@settings(max_examples=200, deadline=None)
@given(
    tz_name=st.sampled_from(TIMEZONES),
    start=st.sampled_from(STARTS),
    first=st.tuples(quarter_hours, off_grid_s),
    others=st.lists(st.tuples(st.integers(-96 * 9, 96 * 9), off_grid_s), max_size=20),
)
def test_period_keys_match_exactly_when_the_local_calendar_periods_do(
    tz_name: str,
    start: datetime,
    first: tuple[int, int],
    others: list[tuple[int, int]],
) -> None:
    tz = ZoneInfo(tz_name)
    a = moment(start, *first)
    for period in PERIODS:
        begins = period_start(period, a, tz)
        assert begins <= a and bucket(period, begins, tz) == bucket(period, a, tz)
        assert bucket(period, begins - timedelta(seconds=1), tz) != bucket(period, a, tz)
        for quarters, off_s in others:
            b = moment(a, quarters, off_s)
            same_key = period_key(period, a, tz) == period_key(period, b, tz)
            assert same_key == (bucket(period, a, tz) == bucket(period, b, tz))


@settings(max_examples=200, deadline=None)
@given(
    mandate_bodies=mandates,
    payee_id=st.sampled_from(["mer_fuel", "mer_park", "dev_fridge"]),
    amount=money(4500),
    start=st.sampled_from(STARTS),
    at=hours_from_start,
    spent_minor=st.sampled_from([0, 0, 1000, 4000]),
)
def test_covering_mandate_matches_the_reference(
    mandate_bodies: list[dict[str, Any]],
    payee_id: str,
    amount: int,
    start: datetime,
    at: timedelta,
    spent_minor: int,
) -> None:
    tz = ZoneInfo("Europe/Berlin")
    now = start + at
    for m in mandate_bodies:
        for field in ("valid_from", "valid_until"):
            if field in m:
                m[field] = start + m[field]
    payee = PAYEES[payee_id]
    terms = OrderTerms(PAYER, "EUR", payee_id, amount, "EUR")
    usage = {m["id"]: {key: Usage(spent_minor, 1) for key in period_keys(now, tz).values()}
             for m in mandate_bodies}  # fmt: skip
    found = covering_mandate(terms, payee, map(to_mandate, mandate_bodies), usage, now, tz)
    expected = reference_mandate(
        mandate_bodies,
        payee_id,
        payee.category or "other",
        amount,
        now,
        lambda period, mandate_id: spent_minor,
    )
    assert (None if found is None else found.id) == expected[1]
