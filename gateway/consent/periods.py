"""Calendar periods in the owner's timezone: where they start and the key a payment counts under.

Everything is computed on local dates, never by adding hours to an instant, so a day is the
owner's calendar day even when it has 23 or 25 hours (DST). Weeks start on Monday.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from typing import Literal, get_args
from zoneinfo import ZoneInfo

Period = Literal["day", "week", "month", "year"]
PERIODS: tuple[Period, ...] = get_args(Period)


def _local_date(at: datetime, tz: ZoneInfo) -> date:
    assert at.tzinfo is not None, "times must be timezone-aware"
    return at.astimezone(tz).date()


def _first_day(period: Period, day: date) -> date:
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    assert period == "year", f"unknown period {period!r}"
    return day.replace(month=1, day=1)


def period_start(period: Period, now: datetime, tz: ZoneInfo) -> datetime:
    """The first instant of the period containing `now`, in UTC.

    UTC because Python compares and subtracts two times in the same zone by wall clock, which is
    an hour off across a DST change; where local midnight falls in a DST gap, this is the first
    instant of the day that exists.
    """
    naive_midnight = datetime.combine(_first_day(period, _local_date(now, tz)), time())
    return naive_midnight.replace(tzinfo=tz).astimezone(UTC)


def next_period_start(period: Period, now: datetime, tz: ZoneInfo) -> datetime:
    """The first instant of the period after the one containing `now` (when its usage resets),
    in the owner's timezone."""
    first = _first_day(period, _local_date(now, tz))
    if period == "day":
        following = first + timedelta(days=1)
    elif period == "week":
        following = first + timedelta(days=7)
    elif period == "month":
        following = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    else:
        following = first.replace(year=first.year + 1)
    instant = datetime.combine(following, time()).replace(tzinfo=tz).astimezone(UTC)
    return instant.astimezone(tz)


def period_key(period: Period, at: datetime, tz: ZoneInfo) -> str:
    """The key of the period containing `at`, e.g. "day:2026-11-27", "week:2026-11-23"."""
    first = _first_day(period, _local_date(at, tz))
    if period == "month":
        return f"month:{first:%Y-%m}"
    if period == "year":
        return f"year:{first:%Y}"
    return f"{period}:{first.isoformat()}"


def period_keys(at: datetime, tz: ZoneInfo) -> dict[Period, str]:
    """The key of every period containing `at`: what a payment approved at `at` counts under."""
    return {period: period_key(period, at, tz) for period in PERIODS}
