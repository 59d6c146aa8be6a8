"""Cursor paging for every list (contract section 7): newest first, `limit` 1 to 200, and a
cursor that keeps its place.

A list is sorted, newest first, by a key that no later item can take before an earlier one
(the creation time then the id, or a sequence number), and a cursor is the key of the last item
of a page, with the list's name, as URL-safe base64 of JSON. The next page starts right after
that key, so items added later come before it: never repeated on a later page, never skipped.
Pure: no I/O, no clock.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Generic, TypeVar

from gateway.errors import Invalid

MAX_LIMIT = 200
MAX_KEY_TEXT = 64  # ids are at most 64 characters
MAX_KEY_INT = 2**63 - 1  # what a BIGINT holds: a larger number must not reach the database
T = TypeVar("T")
R = TypeVar("R")
KeyPart = datetime | int | str
Key = tuple[KeyPart, ...]
Shape = tuple[type[datetime] | type[int] | type[str], ...]
TIME_THEN_ID: Shape = (datetime, str)
SEQUENCE: Shape = (int,)


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a list and the cursor of the next (None: this page holds the last item)."""

    items: list[T]
    next_cursor: str | None


def check_limit(limit: int) -> int:
    """The page size, 1 to 200 (the contract's `limit`)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise Invalid(f"limit must be 1 to {MAX_LIMIT}")
    return limit


def encode_cursor(list_name: str, key: Key) -> str:
    """The cursor that starts the page after the item whose sort key is `key`."""
    parts = [part.isoformat() if isinstance(part, datetime) else part for part in key]
    raw = json.dumps([list_name, *parts], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(list_name: str, cursor: str, shape: Shape) -> Key:
    """The sort key a cursor of this list holds; anything else is 422 `invalid_request`."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        decoded = json.loads(raw)
        if not isinstance(decoded, list) or decoded[:1] != [list_name]:
            raise ValueError("a cursor of another list")
        values = decoded[1:]
        if len(values) != len(shape):
            raise ValueError("a cursor of another shape")
        return tuple(_part(value, kind) for value, kind in zip(values, shape, strict=True))
    except (binascii.Error, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise Invalid("the cursor is not one this list gave") from exc


def _part(value: object, kind: type) -> KeyPart:
    if kind is datetime:
        if not isinstance(value, str):
            raise TypeError("a time must be a string")
        at = datetime.fromisoformat(value)
        if at.tzinfo is None:
            raise ValueError("cursors hold aware times")
        return at.astimezone(UTC)
    if kind is int:
        if type(value) is not int or abs(value) > MAX_KEY_INT:
            raise ValueError("a sequence number out of range")
        return value
    if not isinstance(value, str) or len(value) > MAX_KEY_TEXT or "\x00" in value:
        raise ValueError("an id must be a short string")
    return value


def after(list_name: str, cursor: str | None, shape: Shape) -> Key | None:
    """The key a page starts after (None: the first page)."""
    return None if cursor is None else decode_cursor(list_name, cursor, shape)


def page_of(
    rows: Sequence[R], limit: int, list_name: str, key_of: Callable[[R], Key]
) -> tuple[list[R], str | None]:
    """A page from up to `limit + 1` rows read after the cursor: the first `limit`, and the
    next page's cursor when there was one more (so the last page's cursor is None)."""
    page = list(rows[:limit])
    if len(rows) <= limit:
        return page, None
    return page, encode_cursor(list_name, key_of(page[-1]))
