"""The order journal: every order is on disk, as the exact signed JWS, before it is sent.

An append-only JSON-lines file. `{"order": ID, "seq": N, "jws": JWS}` is written and fsynced
before the order is published; `{"final": ID, "status": S}` once its final result arrives. After
a crash the device re-sends every order without a final line, byte for byte: the gateway
answers a replay with the first result marked `"duplicate": true` and moves no money, so a
retry can never become a second payment. A final line is not fsynced: losing one only means
one more replay.

A crash can tear the last line; it is cut off when the journal is opened (an order whose line
is torn was never published, since publishing waits for the fsync).

The journal also remembers, in memory, when each unfinished order was last sent, so that the
client can re-send those that are due (`due`, `mark_sent`); after a restart every unfinished
order is due at once.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any, BinaryIO

from devices.sdk.identity import KEY_MODE, write_atomic


class Journal:
    """Orders in flight for one device, persisted in `path`."""

    def __init__(self, path: Path, *, fsync: bool = True) -> None:
        self.path, self.fsync = Path(path), fsync
        self._lock = threading.Lock()
        self._unfinished: dict[str, str] = {}  # insertion order is journal order
        self._sent_at: dict[str, float | None] = {}  # None: due now (never sent by this process)
        self._known: set[str] = set()
        self._sequence = 0
        self._load()
        self._file: BinaryIO = open(self.path, "ab")  # noqa: SIM115 - lives as long as we do

    def record_order(self, order_id: str, jws: str) -> None:
        """Persist an order before it is sent; an id may be used once, ever."""
        with self._lock:
            if order_id in self._known:
                raise ValueError(f"order id {order_id!r} was used before")
            self._sequence += 1
            self._append({"order": order_id, "seq": self._sequence, "jws": jws}, self.fsync)
            self._known.add(order_id)
            self._unfinished[order_id] = jws
            self._sent_at[order_id] = time.monotonic()  # it is sent right after this returns

    def record_final(self, order_id: str, status: str) -> bool:
        """Mark an order finished; False if it was not in flight (already final or foreign)."""
        with self._lock:
            if self._unfinished.pop(order_id, None) is None:
                return False
            self._sent_at.pop(order_id, None)
            self._append({"final": order_id, "status": status}, False)
            return True

    def unfinished(self) -> list[tuple[str, str]]:
        """(order id, JWS) of every order without a final result, oldest first."""
        with self._lock:
            return list(self._unfinished.items())

    def due(self, now: float, after_s: float, limit: int) -> list[tuple[str, str]]:
        """Up to `limit` unfinished orders (oldest first) not sent within `after_s` of `now`
        (a monotonic time), as (order id, JWS)."""
        if limit <= 0:
            return []
        with self._lock:
            due = []
            for order_id, jws in self._unfinished.items():
                sent_at = self._sent_at.get(order_id)
                if sent_at is None or now - sent_at >= after_s:
                    due.append((order_id, jws))
                    if len(due) >= limit:
                        break
            return due

    def mark_sent(self, order_ids: list[str], now: float) -> None:
        """Note that these orders were (re-)sent at `now` (a monotonic time)."""
        with self._lock:
            for order_id in order_ids:
                if order_id in self._unfinished:
                    self._sent_at[order_id] = now

    def mark_due_if_sent_before(self, moment: float) -> None:
        """Make due now every unfinished order last sent before `moment` (a reconnect: the
        broker may have lost what was sent on the old connection)."""
        with self._lock:
            for order_id, sent_at in self._sent_at.items():
                if sent_at is not None and sent_at < moment:
                    self._sent_at[order_id] = None

    def jws_of(self, order_id: str) -> str | None:
        """The journaled JWS of an order still in flight."""
        with self._lock:
            return self._unfinished.get(order_id)

    def is_known(self, order_id: str) -> bool:
        """Whether this device ever journaled the id (since the last compaction)."""
        with self._lock:
            return order_id in self._known

    def next_sequence(self) -> int:
        """The sequence number the next order will get (1 for a new journal)."""
        with self._lock:
            return self._sequence + 1

    def compact(self) -> None:
        """Rewrite the journal with only the orders in flight (and the sequence counter)."""
        with self._lock:
            lines: list[dict[str, Any]] = [{"seq": self._sequence}]
            lines += [{"order": o, "seq": 0, "jws": j} for o, j in self._unfinished.items()]
            data = b"".join(_line(entry) for entry in lines)
            self._file.close()
            write_atomic(self.path, data, KEY_MODE)
            self._file = open(self.path, "ab")  # noqa: SIM115
            self._known = set(self._unfinished)

    def close(self) -> None:
        with self._lock:
            self._file.close()

    def _append(self, entry: dict[str, Any], durable: bool) -> None:
        self._file.write(_line(entry))
        self._file.flush()
        if durable:
            os.fsync(self._file.fileno())

    def _load(self) -> None:
        if not self.path.exists():
            write_atomic(self.path, b"", KEY_MODE)
            return
        data = self.path.read_bytes()
        complete = data[: data.rfind(b"\n") + 1]
        if len(complete) != len(data):  # a torn last line: never published, cut it off
            with open(self.path, "r+b") as file:
                file.truncate(len(complete))
        for raw in complete.splitlines():
            self._replay(json.loads(raw))

    def _replay(self, entry: dict[str, Any]) -> None:
        self._sequence = max(self._sequence, int(entry.get("seq", 0)))
        if "order" in entry:
            self._known.add(entry["order"])
            self._unfinished[entry["order"]] = entry["jws"]
            self._sent_at[entry["order"]] = None
        elif "final" in entry:
            self._known.add(entry["final"])
            self._unfinished.pop(entry["final"], None)
            self._sent_at.pop(entry["final"], None)


def _line(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, separators=(",", ":")).encode() + b"\n"
