"""What the order path's helper processes share (`verifier`, `signer`): a child started as
`python -m MODULE` that reads records on its stdin and answers on its stdout, and that exits
when its gateway closes the pipe or dies (even by SIGKILL: the pipe closes with it).

A record is a `marshal`led tuple of plain values (str, bytes, int, None, tuples, lists, dicts)
behind a 4-byte big-endian length; a frame is records behind the 4-byte length of them all.
"""

from __future__ import annotations

import marshal
import os
import signal
import struct
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from typing import Any

_LENGTH = struct.Struct(">I")
POLL_EVERY_S = 0.5


class Liveness:
    """Whether a child still runs, asking the kernel (`Popen.poll`, a `waitpid`) at most every
    POLL_EVERY_S: the verifier asked once per read from the broker, on the MQTT network thread,
    and `waitpid` lets go of the GIL, so each ask handed the GIL to the worker and waited to get
    it back. A child that died meanwhile shows sooner anyway: a write to its pipe fails (EPIPE)
    and a read finds its end of file."""

    def __init__(self) -> None:
        self._until = 0.0  # monotonic time until which the last "running" stands

    def running(self, child: subprocess.Popen[bytes]) -> bool:
        now = time.monotonic()
        if now < self._until:
            return True
        if child.poll() is None:
            self._until = now + POLL_EVERY_S
            return True
        return False


def spawn(module: str) -> subprocess.Popen[bytes]:
    """Start `python -m module` with pipes on its stdin and stdout, both non-blocking here. In a
    session of its own: a terminal's Ctrl-C goes to the whole foreground process group, and a
    child still importing (before `serve` ignores SIGINT) died of it with a traceback on the
    gateway's terminal; the child ends when its pipe closes, however the gateway ends."""
    child = subprocess.Popen(
        [sys.executable, "-m", module],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert child.stdin is not None and child.stdout is not None
    os.set_blocking(child.stdin.fileno(), False)
    os.set_blocking(child.stdout.fileno(), False)
    return child


def end(child: subprocess.Popen[bytes]) -> None:
    """Close its pipes (it exits) and wait for it, killing it after 2 s."""
    for pipe in (child.stdin, child.stdout):
        if pipe is not None:
            pipe.close()
    try:
        child.wait(2)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()


def record(*values: Any) -> bytes:
    """One record; ValueError for a value marshal cannot write."""
    body = marshal.dumps(values)
    return _LENGTH.pack(len(body)) + body


def fits(record: bytes, limit: int) -> bool:
    """Whether a frame of at most `limit` bytes can hold this record."""
    return _LENGTH.size + len(record) <= limit


def frames(records: list[bytes], limit: int | None = None) -> Iterator[bytes]:
    """The records in frames of at most `limit` bytes (a record no frame can hold is left out)."""
    body = bytearray()
    for one in records:
        if limit is not None and not fits(one, limit):
            continue
        if limit is not None and _LENGTH.size + len(body) + len(one) > limit:
            yield _LENGTH.pack(len(body)) + body
            body = bytearray()
        body += one
    if body:
        yield _LENGTH.pack(len(body)) + body


def records(buffer: bytearray) -> Iterator[tuple[Any, ...]]:
    """The records of the whole frames at the start of `buffer`, which loses them."""
    while len(buffer) >= _LENGTH.size:
        (size,) = _LENGTH.unpack_from(buffer)
        if len(buffer) < _LENGTH.size + size:
            return
        body = bytes(buffer[_LENGTH.size : _LENGTH.size + size])
        del buffer[: _LENGTH.size + size]
        at = 0
        while at < len(body):
            (length,) = _LENGTH.unpack_from(body, at)
            start = at + _LENGTH.size
            yield marshal.loads(body[start : start + length])
            at = start + length


def read_available(fd: int, buffer: bytearray) -> bool:
    """Append what the non-blocking `fd` has to `buffer`; False once its writer has closed it."""
    try:
        while chunk := os.read(fd, 65536):
            buffer += chunk
    except BlockingIOError:
        return True
    except (OSError, ValueError):
        return False
    return False


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def serve(answer: Callable[[tuple[Any, ...]], bytes | None]) -> None:
    """The child's loop: each record read through `answer`, whose records are written back a
    frame per read, until the gateway closes the pipe. A record `answer` fails on goes
    unanswered (the gateway then does that work itself) and is reported on stderr."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a terminal's Ctrl-C is the gateway's to handle
    unread = bytearray()
    try:
        while chunk := os.read(0, 65536):
            unread += chunk
            answers = [a for a in map(_guarded(answer), records(unread)) if a is not None]
            for frame in frames(answers):
                write_all(1, frame)
    except BrokenPipeError:  # the gateway is gone
        pass


def _guarded(
    answer: Callable[[tuple[Any, ...]], bytes | None],
) -> Callable[[tuple[Any, ...]], bytes | None]:
    def guarded(request: tuple[Any, ...]) -> bytes | None:
        try:
            return answer(request)
        except Exception:  # noqa: BLE001 - one record must not end the helper for all
            traceback.print_exc(file=sys.stderr)
            return None

    return guarded
