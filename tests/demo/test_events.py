"""The demo owners' event streams: SSE parsing, and a stream that drops resumes with
Last-Event-ID (against a real HTTP server on loopback that drops the first connection), and
closing ends a silent open stream at once."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from simulators.backoffice import Owner
from simulators.demo.events import Comment, Inbox, Message, parse_sse


def test_parse_sse_reads_ids_types_multiline_data_and_comments() -> None:
    lines = [
        ": subscribed",
        "id: evt_1",
        "event: approval.pending",
        'data: {"a":',
        "data: 1}",
        "",
        "data:no space",
        "",
        ":ping",
        "id: evt_2",
        "",  # an id alone dispatches nothing
    ]
    assert list(parse_sse(lines)) == [
        Comment("subscribed"),
        Message("evt_1", "approval.pending", '{"a":\n1}'),
        Message(None, "message", "no space"),
        Comment("ping"),
    ]


def sse(event_id: str, event_type: str, data: dict[str, object]) -> bytes:
    body = {"id": event_id, "type": event_type, "created_at": "2026-01-01T00:00:00Z", "data": data}
    return f"id: {event_id}\nevent: {event_type}\ndata: {json.dumps(body)}\n\n".encode()


class Script:
    """What each connection answers: the first sends one event and drops, the next resumes."""

    def __init__(self) -> None:
        self.requests: list[dict[str, str]] = []


@pytest.fixture
def flaky_stream() -> Iterator[tuple[str, Script]]:
    script = Script()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            script.requests.append({k.lower(): v for k, v in self.headers.items()})
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b": subscribed\n\n")
            if len(script.requests) == 1:
                self.wfile.write(sse("evt_1", "approval.pending", {"id": "apr_1"}))
                self.wfile.write(b"id: evt_2\nevent: approval.pen")  # cut off mid-message
                self.wfile.flush()
                return
            resumed = self.headers.get("Last-Event-ID")
            if resumed == "evt_1":
                self.wfile.write(sse("evt_1", "approval.pending", {"id": "apr_1"}))  # again
                self.wfile.write(sse("evt_2", "approval.pending", {"id": "apr_2"}))
                self.wfile.write(sse("evt_3", "approval.decided", {"id": "apr_1"}))
            self.wfile.flush()
            time.sleep(30)  # open and silent: closing the inbox must not wait for it

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", script
    finally:
        server.shutdown()
        server.server_close()


def test_a_dropped_stream_resumes_after_the_last_event_and_nothing_repeats(
    flaky_stream: tuple[str, Script],
) -> None:
    url, script = flaky_stream
    owner = Owner(url, "own_1", "key_1")
    inbox = Inbox(url, [owner, owner])  # one stream per owner, however many devices
    try:
        inbox.open()
        found: list[str] = []
        deadline = time.monotonic() + 10
        while len(found) < 2 and time.monotonic() < deadline:
            found += [approval["id"] for _, approval in inbox.pending()]
            time.sleep(0.05)
    finally:
        closing = time.monotonic()
        inbox.close()
        closed_s = time.monotonic() - closing
        owner.close()
    assert closed_s < 1.0 and not any(s._thread.is_alive() for s in inbox.streams)
    assert found == ["apr_1", "apr_2"]
    assert inbox.pending_events == 2 and inbox.connections >= 2
    assert script.requests[0]["authorization"] == "Bearer key_1"
    assert "last-event-id" not in script.requests[0]
    assert script.requests[1]["last-event-id"] == "evt_1"
