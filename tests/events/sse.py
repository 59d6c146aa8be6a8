"""The event stream over a real HTTP server: uvicorn on loopback, and a client reading it."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI

from gateway.context import Context
from gateway.http.app import create_app
from gateway.server import free_port


@contextmanager
def served(ctx: Context, app: FastAPI | None = None) -> Iterator[tuple[str, uvicorn.Server]]:
    """The gateway's API (or `app`) served by uvicorn on loopback, in a thread."""
    port = free_port()
    config = uvicorn.Config(
        app or create_app(ctx),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=3,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        thread.join(10)


class Stream:
    """One open event stream, read line by line in a thread."""

    def __init__(self, url: str, headers: dict[str, str], cookies: dict[str, str] | None = None):
        self.lines: list[str] = []
        self.ended = threading.Event()
        self.status = 0
        self._socket: socket.socket | None = None
        self._client = httpx.Client(timeout=httpx.Timeout(5, read=30), cookies=cookies)
        self._thread = threading.Thread(target=self._read, args=(url, headers), daemon=True)
        self._thread.start()

    def _read(self, url: str, headers: dict[str, str]) -> None:
        try:
            with self._client.stream("GET", url + "/v1/events/stream", headers=headers) as r:
                self.status = r.status_code
                self._socket = r.extensions["network_stream"].get_extra_info("socket")
                for line in r.iter_lines():
                    self.lines.append(line)
        except httpx.HTTPError:
            pass
        finally:
            self.ended.set()

    def events(self) -> list[dict[str, Any]]:
        """The events received so far, each as {"id", "event", "data"}."""
        out: list[dict[str, Any]] = []
        current: dict[str, Any] = {}
        for line in list(self.lines):
            if not line.strip():
                if "data" in current:
                    out.append(current)
                current = {}
            elif not line.startswith(":"):
                field, _, value = line.partition(":")
                current[field] = value.strip()
        return out

    def wait(self, count: int, timeout_s: float = 10) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout_s
        while len(self.events()) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.events()

    def subscribed(self, timeout_s: float = 10) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.lines and self.lines[0].startswith(":"):
                return True
            time.sleep(0.02)
        return False

    def disconnect(self) -> None:
        """Go away as a client does: the connection is shut down under the reading thread
        (closing the client alone leaves a response being read open)."""
        assert self._socket is not None, "not connected"
        self._socket.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._client.close()
