"""The order journal: every order is on disk, as the exact signed JWS, before it is sent.

An append-only JSON-lines file. `{"order": ID, "seq": N, "jws": JWS}` is written and fsynced
before the order is published; `{"final": ID, "status": S}` once its final result arrives. After
a crash the device re-sends every order without a final line, byte for byte: the gateway
answers a replay with the first result marked `"duplicate": true` and moves no money, so a
retry can never become a second payment. A final line is not fsynced: losing one only means
one more replay.

A crash can tear the last line; it is cut off when the journal is opened (an order whose line
is torn was never published, since publishing waits for the fsync).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any, BinaryIO

from devices.sdk.identity import KEY_MODE, write_atomic


class Journal:
    """Orders in flight for one device, persisted in `path`."""

    def __init__(self, path: Path, *, fsync: bool = True) -> None:
        self.path, self.fsync = Path(path), fsync
        self._lock = threading.Lock()
        self._unfinished: dict[str, str] = {}  # insertion order is journal order
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

    def record_final(self, order_id: str, status: str) -> bool:
        """Mark an order finished; False if it was not in flight (already final or foreign)."""
        with self._lock:
            if self._unfinished.pop(order_id, None) is None:
                return False
            self._append({"final": order_id, "status": status}, False)
            return True

    def unfinished(self) -> list[tuple[str, str]]:
        """(order id, JWS) of every order without a final result, oldest first."""
        with self._lock:
            return list(self._unfinished.items())

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
        elif "final" in entry:
            self._known.add(entry["final"])
            self._unfinished.pop(entry["final"], None)


def _line(entry: dict[str, Any]) -> bytes:
    return json.dumps(entry, separators=(",", ":")).encode() + b"\n"
