"""The audit trail as a hash chain: each entry's hash covers the previous hash and its content.

Pure: the SQL adapter (`gateway.store`) reads and writes rows; this module only computes and
checks hashes. Content is canonical JSON (sorted keys, no spaces, UTF-8), so any change to any
column but the primary key changes the hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS_HASH = "0" * 64


@dataclass(frozen=True)
class AuditEntry:
    """One recorded decision, money movement or party action."""

    seq: int
    at: datetime
    actor: str
    action: str
    device_id: str | None
    data: str  # canonical JSON
    prev_hash: str
    hash: str


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the same content always gives the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def utc_text(at: datetime) -> str:
    """A timestamp as fixed-width UTC text (naive datetimes from SQLite are UTC)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_hash(
    seq: int, at: datetime, actor: str, action: str, device_id: str | None, data: str, prev: str
) -> str:
    """SHA-256 over the previous hash and the entry's canonical content."""
    content = canonical_json(
        {
            "seq": seq,
            "at": utc_text(at),
            "actor": actor,
            "action": action,
            "device_id": device_id,
            "data": data,
            "prev_hash": prev,
        }
    )
    return hashlib.sha256(f"{prev}\n{content}".encode()).hexdigest()


def chain(
    prev_seq: int, prev_hash: str, at: datetime, items: Iterable[tuple[str, str, str | None, Any]]
) -> list[AuditEntry]:
    """Link new (actor, action, device_id, data) items after the entry (prev_seq, prev_hash)."""
    entries = []
    for offset, (actor, action, device_id, data) in enumerate(items, start=1):
        seq, text = prev_seq + offset, canonical_json(data)
        digest = entry_hash(seq, at, actor, action, device_id, text, prev_hash)
        entries.append(AuditEntry(seq, at, actor, action, device_id, text, prev_hash, digest))
        prev_hash = digest
    return entries


def first_bad_entry(
    entries: Iterable[AuditEntry], head_seq: int, head_hash: str
) -> tuple[int, str] | None:
    """The first entry that breaks the chain, with why, or None when it is intact to its anchor."""
    expected_seq, expected_prev = 1, GENESIS_HASH
    for entry in entries:
        if entry.seq != expected_seq:
            return expected_seq, f"entry {expected_seq} is missing (found {entry.seq})"
        if entry.prev_hash != expected_prev:
            return entry.seq, "its prev_hash does not match the previous entry"
        recomputed = entry_hash(
            entry.seq,
            entry.at,
            entry.actor,
            entry.action,
            entry.device_id,
            entry.data,
            entry.prev_hash,
        )
        if recomputed != entry.hash:
            return entry.seq, "its content does not match its hash"
        expected_seq, expected_prev = entry.seq + 1, entry.hash
    if expected_seq - 1 != head_seq or expected_prev != head_hash:
        return expected_seq, f"the chain ends at {expected_seq - 1} but its anchor says {head_seq}"
    return None
