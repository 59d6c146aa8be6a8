"""A batch's results signed in a child process while the worker writes the batch's rows.

Signing the results (JSON, ES256, base64) is about a tenth of the worker's time an order once the
verifier has taken the orders' signatures (`gateway.orders.verifier`). The tokens are needed
only for the outbox's insert, near the transaction's end, so `batch.finish` hands the payloads
to a child, `python -m gateway.orders.signer`, which holds the gateway's result key, and picks
the tokens up after writing everything else; by then they are there.

The worker never depends on the child: while it is down, or if it does not answer within
ANSWER_WITHIN_S (it is then ended), the worker signs the batch itself, and a new child is
started after RESTART_AFTER_S. A request is written only once the child has said it holds the
key, and only when it has answered every earlier one, so its pipe is empty and the write never
blocks the worker.
"""

from __future__ import annotations

import logging
import os
import select
import subprocess
import time
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    load_der_private_key,
)

from devices import wire
from gateway.orders import child as pipes

log = logging.getLogger("kym.signer")
ANSWER_WITHIN_S = 1.0
RESTART_AFTER_S = 5.0
READY = "ready"
MAX_REQUEST_BYTES = 60_000  # within an empty pipe's 64 KiB: written whole at once
Tokens = Callable[[], list[str]]


class Signer:
    """Used by one worker thread."""

    def __init__(self, key: wire.PrivateKey) -> None:
        self.key = key
        self._child: subprocess.Popen[bytes] | None = None
        self._liveness = pipes.Liveness()
        self._stopped = True
        self._down_since = 0.0
        self._last_request = 0
        self._unread = bytearray()
        self._started = False  # the child has said it holds the key
        self.signed_by_child = 0  # results, for the tests and the curious

    def start(self) -> None:
        self._stopped = False
        child = pipes.spawn("gateway.orders.signer")
        self._child, self._unread, self._started = child, bytearray(), False
        der = self.key.private_bytes(Encoding.DER, PrivateFormat.PKCS8, NoEncryption())
        if not self._send(pipes.record(der)):
            self._give_up("could not hand the signer its key")

    def stop(self) -> None:
        self._stopped = True
        child, self._child = self._child, None
        if child is not None:
            pipes.end(child)

    def sign_all(self, payloads: list[dict[str, Any]]) -> Tokens:
        """Start signing the payloads; the returned function gives their tokens, in order."""
        if not payloads or not self._running() or not self._ready():
            return lambda: self._sign_here(payloads)
        self._last_request += 1
        request = self._last_request
        try:
            message = pipes.record(request, payloads)
        except ValueError:  # not plain values: signed here
            return lambda: self._sign_here(payloads)
        if len(message) > MAX_REQUEST_BYTES or not self._send(message):
            return lambda: self._sign_here(payloads)
        return lambda: self._tokens(request, payloads)

    def _tokens(self, request: int, payloads: list[dict[str, Any]]) -> list[str]:
        deadline = time.monotonic() + ANSWER_WITHIN_S
        while (child := self._child) is not None and child.stdout is not None:
            open_ = pipes.read_available(child.stdout.fileno(), self._unread)
            for answered, tokens in pipes.records(self._unread):
                if answered == request and len(tokens) == len(payloads):
                    self.signed_by_child += len(tokens)
                    return list(tokens)
            left = deadline - time.monotonic()
            if not open_:
                self._give_up("the signer closed its pipe")
                break
            if left <= 0:
                self._give_up(f"the signer did not answer within {ANSWER_WITHIN_S} s")
                break
            select.select([child.stdout.fileno()], [], [], left)
        return self._sign_here(payloads)

    def _ready(self) -> bool:
        """Whether the child has its key (it says so once, after starting)."""
        if not self._started:
            child = self._child
            if child is not None and child.stdout is not None:
                pipes.read_available(child.stdout.fileno(), self._unread)
                self._started = any(r == (READY,) for r in pipes.records(self._unread))
        return self._started

    def _sign_here(self, payloads: list[dict[str, Any]]) -> list[str]:
        return [wire.sign(payload, self.key) for payload in payloads]

    def _send(self, message: bytes) -> bool:
        child = self._child
        if child is None or child.stdin is None:
            return False
        try:
            frame = next(pipes.frames([message]))
            written = os.write(child.stdin.fileno(), frame)
        except (OSError, ValueError):
            return False
        if 0 < written < len(frame):  # its pipe was not empty after all: the stream is broken
            self._give_up("the signer's pipe took part of a request")
        return written == len(frame)

    def _running(self) -> bool:
        if self._stopped:
            return False
        if self._child is not None and self._liveness.running(self._child):
            return True
        if self._child is not None:
            self._give_up(f"the signer exited ({self._child.returncode})")
        if time.monotonic() - self._down_since < RESTART_AFTER_S:
            return False
        try:
            self.start()
        except OSError:
            log.exception("could not start the result signer")
            self._down_since = time.monotonic()
            return False
        return self._child is not None

    def _give_up(self, why: str) -> None:
        log.warning("%s; the worker signs results itself", why)
        child, self._child = self._child, None
        if child is not None:
            child.kill()
            pipes.end(child)
        self._down_since = time.monotonic()


_KEY: list[wire.PrivateKey] = []  # the child's: the gateway's result key, its first record


def answer(request: tuple[Any, ...]) -> bytes | None:
    """The child's part: the first record is the key, every other a batch's payloads."""
    if not _KEY:
        (der,) = request
        key = load_der_private_key(der, None)
        assert isinstance(key, wire.PrivateKey)
        _KEY.append(key)
        return pipes.record(READY)
    number, payloads = request
    return pipes.record(number, [wire.sign(payload, _KEY[0]) for payload in payloads])


if __name__ == "__main__":
    pipes.serve(answer)
