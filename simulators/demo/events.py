"""The owners' event streams: how the demo's owners learn that an approval waits for them.

One Server-Sent Events connection (`GET /v1/events/stream`, the owner's key) per owner, read on
a thread of its own; each `approval.pending` event goes to a queue that the demo's main loop
reads (`Inbox.pending`). A stream that drops is opened again with `Last-Event-ID`, so whatever
was recorded meanwhile still arrives; events are deduplicated on their id.
"""

from __future__ import annotations

import json
import queue
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from typing import Any

import httpx

from simulators.backoffice import Owner

PENDING = "approval.pending"
READ_TIMEOUT_S = 25.0  # the gateway sends a keep-alive comment every 10 s
RECONNECT_AFTER_S = (0.2, 2.0)  # the first wait before reconnecting, and the longest
SUBSCRIBE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Message:
    """One Server-Sent Events message (`event` is "message" when the stream names none)."""

    id: str | None
    event: str
    data: str


@dataclass(frozen=True)
class Comment:
    text: str


def parse_sse(lines: Iterable[str]) -> Iterator[Message | Comment]:
    """Messages and comments from a stream's lines, as the SSE specification reads them."""
    event, event_id = "", None
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield Message(event_id, event or "message", "\n".join(data))
            event, data, event_id = "", [], None
            continue
        if line.startswith(":"):
            yield Comment(line[1:].strip())
            continue
        name, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if name == "event":
            event = value
        elif name == "data":
            data.append(value)
        elif name == "id" and "\0" not in value:
            event_id = value


class OwnerStream:
    """One owner's stream, read on its own thread until `stop` is set."""

    def __init__(
        self,
        api_url: str,
        owner: Owner,
        arrivals: queue.Queue[tuple[Owner, dict[str, Any]]],
        stop: threading.Event,
    ) -> None:
        self.owner, self.arrivals, self.stop = owner, arrivals, stop
        timeout = httpx.Timeout(10.0, read=READ_TIMEOUT_S)
        self.http = httpx.Client(base_url=api_url, timeout=timeout)
        self.last_event_id: str | None = None
        self.subscribed = threading.Event()
        self.connections = 0
        self.pending_events = 0
        self._seen: set[str] = set()
        self._socket: socket.socket | None = None  # the open stream's, to end it from outside
        self._thread = threading.Thread(target=self._run, name=f"events {owner.id}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def close(self, timeout_s: float = 2.0) -> None:
        """With `stop` set: end the open stream at once (a blocked read returns) and wait."""
        sock = self._socket
        if sock is not None:
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout_s)
        if not self._thread.is_alive():
            self.http.close()

    def _run(self) -> None:
        wait_s = RECONNECT_AFTER_S[0]
        while not self.stop.is_set():
            try:
                self._follow()
                wait_s = RECONNECT_AFTER_S[0]  # it ended cleanly (the gateway is stopping?)
            except (httpx.HTTPError, OSError):
                pass  # dropped: open it again after what it last delivered
            if self.stop.wait(wait_s):
                return
            wait_s = min(wait_s * 2, RECONNECT_AFTER_S[1])

    def _follow(self) -> None:
        headers = {"Authorization": f"Bearer {self.owner.api_key}", "Accept": "text/event-stream"}
        if self.last_event_id is not None:
            headers["Last-Event-ID"] = self.last_event_id
        with self.http.stream("GET", "/v1/events/stream", headers=headers) as response:
            response.raise_for_status()
            self.connections += 1
            self._socket = response.extensions["network_stream"].get_extra_info("socket")
            if self.stop.is_set():  # closed while connecting
                return
            for item in parse_sse(response.iter_lines()):
                if self.stop.is_set():
                    return
                if isinstance(item, Comment):
                    self.subscribed.set()
                else:
                    self._take(item)

    def _take(self, message: Message) -> None:
        if message.id is not None:
            self.last_event_id = message.id
            if message.id in self._seen:
                return
            self._seen.add(message.id)
        if message.event == PENDING:
            self.pending_events += 1
            self.arrivals.put((self.owner, json.loads(message.data)["data"]))


class Inbox:
    """Every owner's stream; `pending` hands over the approvals announced since the last call."""

    def __init__(self, api_url: str, owners: Iterable[Owner]) -> None:
        self.arrivals: queue.Queue[tuple[Owner, dict[str, Any]]] = queue.Queue()
        self.stop = threading.Event()
        unique = {owner.id: owner for owner in owners}
        self.streams = [OwnerStream(api_url, o, self.arrivals, self.stop) for o in unique.values()]

    def open(self) -> None:
        """Start every stream and wait until each is subscribed: nothing after that is missed."""
        for stream in self.streams:
            stream.start()
        deadline = time.monotonic() + SUBSCRIBE_TIMEOUT_S
        for stream in self.streams:
            if not stream.subscribed.wait(max(0.0, deadline - time.monotonic())):
                raise TimeoutError(f"the event stream of owner {stream.owner.id} did not open")

    def pending(self) -> list[tuple[Owner, dict[str, Any]]]:
        found = []
        while True:
            try:
                found.append(self.arrivals.get_nowait())
            except queue.Empty:
                return found

    @property
    def connections(self) -> int:
        return sum(stream.connections for stream in self.streams)

    @property
    def pending_events(self) -> int:
        return sum(stream.pending_events for stream in self.streams)

    def close(self) -> None:
        self.stop.set()
        for stream in self.streams:
            stream.close()
