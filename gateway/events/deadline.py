"""A deadline for one webhook attempt as a whole. httpx's timeouts bound each read and write,
not the request: a receiver that sends its answer a byte every few seconds held an attempt (and
one of the worker's few slots) for as long as it liked, well past its lease, so the attempt was
taken again alongside, and a handful of such receivers stopped every other party's deliveries.

`Deadline` is an httpx `trace` extension: it keeps a duplicate of the connection's socket once
it is connected (a duplicate, since a TLS connection takes the first one over), and when the
time is up shuts the connection down, which ends whatever read or write is waiting on it. The
client must not keep connections alive, so that every attempt connects (and is traced) anew.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from types import TracebackType
from typing import Any


class Deadline:
    """Cuts the connection of the request it traces `timeout_s` after the block starts."""

    def __init__(self, timeout_s: float) -> None:
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._expired = self._finished = False
        self._timer = threading.Timer(timeout_s, self._expire)
        self._timer.daemon = True

    @property
    def expired(self) -> bool:
        return self._expired

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """The `trace` extension's callback: takes the socket once connected."""
        if event != "connection.connect_tcp.complete":
            return
        stream = info.get("return_value")
        raw = None if stream is None else stream.get_extra_info("socket")
        if not isinstance(raw, socket.socket):
            return
        with self._lock:
            if self._finished:
                return
            self._socket = raw.dup()
            if self._expired:
                self._cut()

    def _expire(self) -> None:
        with self._lock:
            if self._finished:
                return
            self._expired = True
            self._cut()

    def _cut(self) -> None:
        if self._socket is None:
            return
        with contextlib.suppress(OSError):  # already closed by the other side
            self._socket.shutdown(socket.SHUT_RDWR)

    def __enter__(self) -> Deadline:
        self._timer.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._timer.cancel()
        with self._lock:
            self._finished = True
            if self._socket is not None:
                self._socket.close()
                self._socket = None
