"""Random hex for the ids and salts the order path makes: the operating system's CSPRNG, read
4 KiB at a time; and ids that begin with the time (`ordered_hex`), for the rows a payment adds.

`secrets.token_hex` makes one getrandom() call per id, and CPython lets go of the GIL around
it. In a busy worker another thread (the MQTT network thread) takes the GIL then, and the
worker waits to get it back: under `kym bench` that wait was 7-9 % of the worker's time, for
the four ids and salts a payment takes (py-spy; benchmarks/README.md). Read in blocks, the same
source costs one call for a few hundred ids. Each byte is handed out once, under a lock, and a
forked child starts with an empty block.
"""

from __future__ import annotations

import os
import threading
import time

BLOCK_BYTES = 4096


class _Pool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._block = b""
        self._taken = 0

    def take(self, nbytes: int) -> bytes:
        with self._lock:
            if self._taken + nbytes > len(self._block):
                self._block, self._taken = os.urandom(max(BLOCK_BYTES, nbytes)), 0
            start, self._taken = self._taken, self._taken + nbytes
            return self._block[start : self._taken]

    def forget(self) -> None:
        self._lock = threading.Lock()
        self._block, self._taken = b"", 0


_POOL = _Pool()
os.register_at_fork(after_in_child=_POOL.forget)


def random_hex(nbytes: int) -> str:
    """`nbytes` random bytes as hex, as `secrets.token_hex(nbytes)`."""
    return _POOL.take(nbytes).hex()


def ordered_hex(nbytes: int) -> str:
    """The time in milliseconds (12 hex digits), then `nbytes` random bytes as hex: ids made
    later sort after earlier ones (within a millisecond, at random), as UUIDv7 does.

    The indexes over payment and event ids then grow at their right edge. With random ids,
    each of a batch's inserts landed on a different page of every such index, and SQLite
    writes each page a commit touches to the WAL whole: 25 KB a payment in batches of 100,
    66 KB in batches of a few (`kym bench`, the gateway's `write_bytes`)."""
    return f"{time.time_ns() // 1_000_000:012x}{random_hex(nbytes)}"
