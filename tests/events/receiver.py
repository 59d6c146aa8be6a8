"""A real HTTP server on loopback that records what webhooks POST to it (a fake with a
recording attribute, in the spirit of `FakeNotifications.sent`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """Answers each POST with the next of `answers` (the last one repeats)."""

    host: str
    port: int = 0
    answers: list[tuple[int, dict[str, str]]] = field(default_factory=lambda: [(204, {})])
    received: list[Received] = field(default_factory=list)
    times: list[float] = field(default_factory=list)  # time.monotonic() of each arrival
    arrived: threading.Condition = field(default_factory=threading.Condition)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/hook"

    def wait_for(self, count: int, timeout_s: float = 10) -> list[Received]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.received) >= count, timeout_s)
            return list(self.received)


@contextmanager
def receiver(
    host: str = "127.0.0.1",
    answers: list[tuple[int, dict[str, str]]] | None = None,
    port: int = 0,
) -> Iterator[Receiver]:
    """A receiving server in a thread, stopped when the block ends."""
    recorder = Receiver(host, answers=answers or [(204, {})])

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the name http.server calls
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            with recorder.arrived:
                n = len(recorder.received)
                headers = {k.lower(): v for k, v in self.headers.items()}
                recorder.received.append(Received(self.path, headers, body))
                recorder.times.append(time.monotonic())
                recorder.arrived.notify_all()
            status, headers = recorder.answers[min(n, len(recorder.answers) - 1)]
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    recorder.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()
