"""What an audit entry says, and its canonical bytes (RFC 8785, JCS) that the leaf hash covers.

Pure. Content is `{"index", "ts", "actor", "action", "device_id"?, "payment_id"?, "order_id"?,
"data"}` (contract section 9): integers only (within ±(2**53 - 1)), ASCII keys, no lone
surrogates.
An entry about a payment carries its `payment_id` at the top level; a caller that puts
`payment_id` or `order_id` only in `data` gets it copied up, so no entry about a payment can
lack it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson
import rfc8785

from gateway.audit import log

TOP_LEVEL_IDS = ("device_id", "payment_id", "order_id")
_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_SAFE = 2**53  # JCS writes numbers as IEEE 754 doubles: integers are exact below this


class InvalidContent(ValueError):
    """Audit content that the contract does not allow (a float, a non-ASCII key, ...)."""


@dataclass(frozen=True)
class Record:
    """One decision, money movement or party action, as a use case hands it to the log."""

    actor: str
    action: str
    data: Mapping[str, Any] = field(default_factory=dict)
    device_id: str | None = None
    payment_id: str | None = None
    order_id: str | None = None


LegacyItem = tuple[str, str, str | None, Any]  # (actor, action, device_id, data)


def record_of(item: Record | LegacyItem) -> Record:
    """A Record from a Record or an (actor, action, device_id, data) tuple, with `payment_id`
    and `order_id` copied up from `data` when the caller left them out."""
    if not isinstance(item, Record):
        actor, action, device_id, data = item
        item = Record(actor, action, data if data is not None else {}, device_id)
    data = item.data
    payment_id = item.payment_id or _id(data.get("payment_id"))
    order_id = item.order_id or _id(data.get("order_id"))
    if (payment_id, order_id) == (item.payment_id, item.order_id):
        return item
    return Record(item.actor, item.action, data, item.device_id, payment_id, order_id)


def content(index: int, ts: int, record: Record) -> dict[str, Any]:
    """The JSON object that entry `index` stands for."""
    body: dict[str, Any] = {
        "index": index,
        "ts": ts,
        "actor": record.actor,
        "action": record.action,
    }
    for name in TOP_LEVEL_IDS:
        value = getattr(record, name)
        if value is not None:
            body[name] = value
    body["data"] = dict(record.data)
    return body


def canonical(value: Any) -> bytes:
    """JCS (RFC 8785) of a value that the contract allows in audit content, fast.

    Within that subset (no floats, integers within ±(2**53 - 1), ASCII keys, no lone
    surrogates) JCS is exactly orjson's output with sorted keys: the same string escapes, key
    order and integer form, and no whitespace. That is about 50 times faster than the general
    encoder of the `rfc8785` package; tests/audit/test_entries.py holds the two equal, and
    `kym audit verify` recomputes every leaf with `rfc8785` (`canonical_rfc8785`).
    """
    _check(value)
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError as exc:
        raise InvalidContent("a string holds a lone surrogate") from exc


def encode(index: int, ts: int, record: Record) -> tuple[str, bytes]:
    """(`data` as JCS text, JCS of the whole content), serializing `data` once: the content's
    keys sort as action < actor < data < the rest, so its JCS is the JCS of the members before
    `data`, then `data`, then the members after it."""
    data = canonical(dict(record.data)).decode()
    body = content(index, ts, Record(record.actor, record.action, {}, record.device_id,
                                     record.payment_id, record.order_id))  # fmt: skip
    del body["data"]
    before = {key: body.pop(key) for key in ("action", "actor")}
    text = canonical(before)[:-1] + b',"data":' + data.encode() + b"," + canonical(body)[1:]
    return data, text


def canonical_rfc8785(value: Any) -> bytes:
    """JCS of audit content by the `rfc8785` package (the reference the verifier uses)."""
    _check(value)
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as exc:
        raise InvalidContent(str(exc)) from exc


@dataclass(frozen=True)
class AuditEntry:
    """A stored entry: its columns, `data` as JCS text, and its leaf hash (lowercase hex)."""

    index: int
    ts: int
    actor: str
    action: str
    device_id: str | None
    payment_id: str | None
    order_id: str | None
    data: str
    leaf_hash: str

    def content(self) -> dict[str, Any]:
        """The entry's content, rebuilt from its columns."""
        record = Record(
            self.actor,
            self.action,
            json.loads(self.data),
            self.device_id,
            self.payment_id,
            self.order_id,
        )
        return content(self.index, self.ts, record)

    def recomputed_leaf_hash(self) -> bytes:
        """SHA-256(0x00 || JCS(content)) from the columns, not from the stored hash."""
        return log.leaf_hash(canonical_rfc8785(self.content()))

    @property
    def seq(self) -> int:
        """The 0-based leaf index (the name the owner's audit view has used)."""
        return self.index

    @property
    def at(self) -> datetime:
        """`ts` as an aware datetime."""
        return datetime.fromtimestamp(self.ts, UTC)

    @property
    def hash(self) -> str:
        """The leaf hash (the name the owner's audit view has used)."""
        return self.leaf_hash


def problem_of(entry: AuditEntry, expected_index: int) -> str | None:
    """Why a stored entry is not what its position and its leaf hash say, or None."""
    if entry.index != expected_index:
        return f"entry {expected_index} is missing (found {entry.index})"
    try:
        data = json.loads(entry.data)
        if not isinstance(data, dict) or canonical_rfc8785(data).decode() != entry.data:
            return "its data is not the canonical JSON of an object"
        if entry.recomputed_leaf_hash().hex() != entry.leaf_hash:
            return "its content does not match its leaf hash"
    except (ValueError, TypeError) as exc:
        return f"its content is not valid audit content ({exc})"
    return None


def _id(value: object) -> str | None:
    """An id worth copying up (a column of 64 characters): anything else stays in `data` only."""
    return value if isinstance(value, str) and _ID.fullmatch(value) else None


def _check(value: Any) -> None:
    kind = type(value)
    if kind is str or kind is bool or value is None:
        return
    if kind is int:
        if not -_SAFE < value < _SAFE:
            raise InvalidContent(f"integer {value} is outside ±(2**53 - 1)")
    elif kind is dict:
        for key, item in value.items():
            if type(key) is not str or not key.isascii():
                raise InvalidContent(f"key {key!r} is not an ASCII string")
            _check(item)
    elif kind is list or kind is tuple:
        for item in value:
            _check(item)
    elif isinstance(value, str | int | dict | list):  # subclasses (a StrEnum, say): the slow way
        _check(_plain(value))
    else:
        raise InvalidContent(f"{kind.__name__} is not allowed in audit content")


def _plain(value: Any) -> Any:
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    return dict(value) if isinstance(value, dict) else list(value)
