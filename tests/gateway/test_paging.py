"""The cursor encoding every list shares (gateway.paging): round trips, and refusals of
anything a list did not give."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway import paging
from gateway.errors import Invalid

ids = st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789_-"), min_size=1, max_size=64)
times = st.datetimes(timezones=st.just(UTC), min_value=datetime(2000, 1, 1))


@given(times, ids)
def test_a_time_and_id_cursor_round_trips(at: datetime, key: str) -> None:
    cursor = paging.encode_cursor("devices", (at, key))
    assert paging.decode_cursor("devices", cursor, paging.TIME_THEN_ID) == (at, key)


@given(st.integers(min_value=0, max_value=2**63 - 1))
def test_a_sequence_cursor_round_trips(seq: int) -> None:
    cursor = paging.encode_cursor("audit", (seq,))
    assert paging.decode_cursor("audit", cursor, paging.SEQUENCE) == (seq,)


def test_times_come_back_in_utc() -> None:
    berlin = datetime(2026, 3, 29, 3, 30, tzinfo=timezone(timedelta(hours=2)))
    cursor = paging.encode_cursor("mandates", (berlin, "man_1"))
    at, _ = paging.decode_cursor("mandates", cursor, paging.TIME_THEN_ID)
    assert isinstance(at, datetime) and at == berlin and at.tzinfo == UTC


def _raw(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


T, S = ("devices", paging.TIME_THEN_ID), ("audit", paging.SEQUENCE)


@pytest.mark.parametrize(
    ("kind", "cursor"),
    [
        (T, ""),
        (T, "not base64 !"),
        (T, _raw({"devices": 1})),
        (T, _raw(["keys", "2026-01-01T00:00:00+00:00", "x"])),  # another list's
        (T, _raw(["devices", "2026-01-01T00:00:00", "x"])),  # a naive time
        (T, _raw(["devices", "9999-12-31T23:59:59-14:00", "x"])),  # out of range in UTC
        (T, _raw(["devices", 5, "x"])),
        (T, _raw(["devices", "2026-01-01T00:00:00+00:00", "x" * 65])),
        (T, _raw(["devices", "2026-01-01T00:00:00+00:00", "a\u0000b"])),
        (T, _raw(["devices", "2026-01-01T00:00:00+00:00"])),
        (S, _raw(["audit", True])),
        (S, _raw(["audit", 2**63])),
        (S, _raw(["audit", "1"])),
        (S, "W" * 5000),
    ],
)
def test_anything_else_is_invalid_request(kind: tuple[str, paging.Shape], cursor: str) -> None:
    name, shape = kind
    with pytest.raises(Invalid):
        paging.decode_cursor(name, cursor, shape)


def test_the_last_page_has_no_cursor() -> None:
    rows = [(5, "e"), (4, "d"), (3, "c")]
    page, cursor = paging.page_of(rows, 3, "x", lambda r: (r[0],))
    assert page == rows and cursor is None
    page, cursor = paging.page_of(rows, 2, "x", lambda r: (r[0],))
    assert page == rows[:2] and paging.decode_cursor("x", str(cursor), paging.SEQUENCE) == (4,)
    for limit in (0, 201):
        with pytest.raises(Invalid):
            paging.check_limit(limit)
