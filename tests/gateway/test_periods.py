from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from gateway.consent.periods import PERIODS, period_key, period_keys, period_start

BERLIN = ZoneInfo("Europe/Berlin")


def berlin(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=BERLIN)


def test_day_key_is_the_owners_local_date_not_the_utc_date() -> None:
    at = datetime(2026, 11, 26, 23, 30, tzinfo=UTC)  # 00:30 on the 27th in Berlin
    assert period_key("day", at, BERLIN) == "day:2026-11-27"
    assert period_key("day", at, ZoneInfo("UTC")) == "day:2026-11-26"


def test_keys_name_the_period_and_its_first_day() -> None:
    at = berlin(2026, 11, 27, 15, 0)
    assert period_keys(at, BERLIN) == {
        "day": "day:2026-11-27",
        "week": "week:2026-11-23",
        "month": "month:2026-11",
        "year": "year:2026",
    }


def test_weeks_start_on_monday() -> None:
    assert period_key("week", berlin(2026, 11, 29, 23, 59, 59), BERLIN) == "week:2026-11-23"
    assert period_key("week", berlin(2026, 11, 30, 0, 0), BERLIN) == "week:2026-11-30"
    assert period_start("week", berlin(2026, 11, 29, 12), BERLIN) == berlin(2026, 11, 23, 0, 0)


def test_week_across_new_year_is_keyed_by_its_monday_in_the_old_year() -> None:
    assert period_key("week", berlin(2027, 1, 1, 9), BERLIN) == "week:2026-12-28"
    assert period_key("year", berlin(2027, 1, 1, 9), BERLIN) == "year:2027"


def test_month_and_year_start_at_local_midnight_on_their_first_day() -> None:
    now = berlin(2026, 7, 15, 10, 30)
    assert period_start("month", now, BERLIN) == berlin(2026, 7, 1, 0, 0)
    assert period_start("year", now, BERLIN) == berlin(2026, 1, 1, 0, 0)
    assert period_start("day", now, BERLIN) == datetime(2026, 7, 14, 22, 0, tzinfo=UTC)


def test_period_start_is_given_in_utc_so_differences_are_real_durations() -> None:
    assert period_start("day", berlin(2026, 7, 15, 10, 30), BERLIN).tzinfo is UTC


def test_day_of_spring_forward_lasts_23_hours_in_berlin() -> None:
    start = period_start("day", berlin(2026, 3, 29, 12), BERLIN)
    next_start = period_start("day", berlin(2026, 3, 30, 12), BERLIN)
    assert start == datetime(2026, 3, 28, 23, 0, tzinfo=UTC)
    assert next_start - start == timedelta(hours=23)


def test_day_of_fall_back_lasts_25_hours_in_berlin() -> None:
    start = period_start("day", berlin(2026, 10, 25, 12), BERLIN)
    next_start = period_start("day", berlin(2026, 10, 26, 12), BERLIN)
    assert start == datetime(2026, 10, 24, 22, 0, tzinfo=UTC)
    assert next_start - start == timedelta(hours=25)


def test_both_passes_of_the_repeated_hour_count_in_the_same_day() -> None:
    first = datetime(2026, 10, 25, 0, 30, tzinfo=UTC)  # 02:30 CEST
    second = datetime(2026, 10, 25, 1, 30, tzinfo=UTC)  # 02:30 CET
    assert period_key("day", first, BERLIN) == period_key("day", second, BERLIN)
    assert period_key("day", first, BERLIN) == "day:2026-10-25"


def test_period_boundaries_across_berlin_dst_changes_fall_on_local_midnight() -> None:
    for day in (datetime(2026, 3, 29), datetime(2026, 10, 25)):
        midnight = day.replace(tzinfo=BERLIN)
        just_before = midnight.astimezone(UTC) - timedelta(seconds=1)
        assert period_key("day", just_before, BERLIN) != period_key("day", midnight, BERLIN)
        assert period_key("day", midnight, BERLIN) == f"day:{day.date().isoformat()}"


def test_march_ends_at_local_midnight_in_utc_terms_one_hour_off_from_utc_midnight() -> None:
    april_first = datetime(2026, 3, 31, 22, 0, tzinfo=UTC)  # 00:00 CEST on 1 April
    assert period_key("month", april_first - timedelta(seconds=1), BERLIN) == "month:2026-03"
    assert period_key("month", april_first, BERLIN) == "month:2026-04"


def test_period_start_in_a_midnight_dst_gap_is_the_first_real_instant_of_the_day() -> None:
    santiago = ZoneInfo("America/Santiago")  # 2026-09-06: clocks go from 00:00 to 01:00
    start = period_start("day", datetime(2026, 9, 6, 12, tzinfo=santiago), santiago)
    assert start == datetime(2026, 9, 6, 4, 0, tzinfo=UTC)
    local = start.astimezone(santiago)
    assert (local.day, local.hour, local.minute) == (6, 1, 0)


@pytest.mark.parametrize("period", PERIODS)
def test_period_start_is_in_its_own_period_and_a_second_earlier_is_not(period: str) -> None:
    now = berlin(2026, 3, 29, 18)
    start = period_start(period, now, BERLIN)  # type: ignore[arg-type]
    assert period_key(period, start, BERLIN) == period_key(period, now, BERLIN)  # type: ignore[arg-type]
    earlier = start - timedelta(seconds=1)
    assert period_key(period, earlier, BERLIN) != period_key(period, now, BERLIN)  # type: ignore[arg-type]


def test_naive_times_are_a_programmer_error() -> None:
    with pytest.raises(AssertionError):
        period_key("day", datetime(2026, 1, 1), BERLIN)
