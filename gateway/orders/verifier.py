"""Order signatures checked ahead, in a helper process, while the worker decides earlier batches.

An ES256 check costs the worker about 80 µs of the 300-400 µs an order takes (`kym bench` on
SQLite: 2,700 payments/s with it, 3,440/s with verification left out). Done by another thread
of the gateway's process it costs as much again in GIL hand-offs (measured: no gain), so it is
done by a child process, `python -m gateway.orders.verifier`:

- the MQTT network thread gives each admitted order a ticket (`submit`) and, after each read
  from the broker, writes the orders to the child's stdin (`flush`), with a device's key the
  first time it is needed;
- the child verifies each order with its device's keys, as `intake.verify_against`, and writes
  back what it found;
- the worker, taking a batch, picks up what has come back for its tickets (`found`), without
  waiting, and hands it to `intake.check_messages`.

Nothing waits for the child: what it has not answered yet, or could not be sent because its
pipe was full, the transaction verifies itself, as it does every order while the child is down
(it is started again after RESTART_AFTER_S). What the child found is a hint, never a decision:
`intake.check` takes a key's verdict only for a certificate still valid in the transaction.

Both ways, frames of records as `gateway.orders.child` writes them. The gateway's frames are at
most PIPE_BUF bytes, which a pipe takes whole or not at all, so a write to a full pipe never
blocks the network thread.
"""

from __future__ import annotations

import logging
import os
import select
import subprocess
import threading
import time
from typing import TYPE_CHECKING, Any

from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
)

from devices import wire
from devices.contract import device_of_orders_topic
from gateway.orders import child as pipes
from gateway.orders.verified import Verified, verify_against

if TYPE_CHECKING:  # the child process imports no more than it needs
    from gateway.orders.intake import KeyRing

log = logging.getLogger("kym.verifier")
FRAME_BYTES = select.PIPE_BUF
RESTART_AFTER_S = 5.0
MAX_KEPT = 50_000  # findings kept for tickets no batch has taken yet


class Verifier:
    """The gateway's side: `submit` and `flush` on the network thread, `found` on the worker's."""

    def __init__(self, keyring: KeyRing) -> None:
        self.keyring = keyring
        self._child: subprocess.Popen[bytes] | None = None
        self._liveness = pipes.Liveness()
        self._stopped = True  # until `start`, and after `stop`
        self._down_since = 0.0
        self._next_ticket = 0
        self._jobs: list[tuple[int, bytes, tuple[str, ...]]] = []  # (network thread)
        self._sent_keys: set[str] = set()  # keys the current child holds (network thread)
        self._lock = threading.Lock()  # the findings and the child's stdout (worker, stop)
        self._findings: dict[int, Verified] = {}
        self._unread = bytearray()
        self.answered = 0  # orders the worker got the child's finding for

    def start(self) -> None:
        self._child = pipes.spawn("gateway.orders.verifier")
        self._stopped = False
        self._sent_keys = set()
        with self._lock:
            self._unread = bytearray()

    def stop(self) -> None:
        self._stopped = True
        self._end_child()

    def _end_child(self) -> None:
        child, self._child = self._child, None
        if child is None:
            return
        with self._lock:
            pipes.end(child)

    def submit(self, topic: str, raw: bytes) -> int | None:
        """Queue an arriving order for the child; its ticket, or None when it is not sent (its
        device has no key here yet, or the verifier is stopped)."""
        device_id = device_of_orders_topic(topic)
        serials = self.keyring.serials_of(device_id) if device_id is not None else ()
        if not serials or self._stopped:
            return None
        self._next_ticket += 1
        self._jobs.append((self._next_ticket, raw, serials))
        return self._next_ticket

    def flush(self) -> None:
        """Write the queued orders to the child, with the keys it lacks, in frames that a full
        pipe refuses whole (those orders are then the transaction's to verify)."""
        jobs, self._jobs = self._jobs, []
        if not jobs or self._stopped or not self._running():
            return
        records = []
        for ticket, raw, serials in jobs:
            keys = tuple(
                (serial, _der(self.keyring.public_key(serial)))
                for serial in serials
                if serial not in self._sent_keys
            )
            record = pipes.record(ticket, raw, serials, keys)
            if pipes.fits(record, FRAME_BYTES):  # else too large: verified in the transaction
                records.append(record)
                self._sent_keys.update(serial for serial, _ in keys)
        for frame in pipes.frames(records, FRAME_BYTES):
            if not self._write(frame):
                self._sent_keys.clear()  # a dropped frame may have carried keys: send all again
                return

    def found(self, tickets: list[int | None], wait_s: float = 0.0) -> list[Verified | None]:
        """What the child found for these tickets, waiting up to `wait_s` for all of them (the
        worker never waits); forgets those and any older."""
        with self._lock:
            self._read()
            deadline = time.monotonic() + wait_s
            while not all(t is None or t in self._findings for t in tickets):
                left = deadline - time.monotonic()
                if left <= 0 or not self._readable(left) or not self._read():
                    break
            findings = [None if t is None else self._findings.pop(t, None) for t in tickets]
            self.answered += sum(f is not None for f in findings)
            newest = max((t for t in tickets if t is not None), default=None)
            if newest is not None:
                for ticket in [t for t in self._findings if t <= newest]:
                    del self._findings[ticket]
            if len(self._findings) > MAX_KEPT:
                self._findings.clear()
        return findings

    def _running(self) -> bool:
        if self._child is not None and self._liveness.running(self._child):
            return True
        if self._child is not None:
            code = self._child.returncode
            log.warning("the signature verifier exited (%s); the worker verifies orders", code)
            self._end_child()
            self._down_since = time.monotonic()
        if time.monotonic() - self._down_since < RESTART_AFTER_S:
            return False
        try:
            self.start()
        except OSError:
            log.exception("could not start the signature verifier")
            self._down_since = time.monotonic()
            return False
        return True

    def _write(self, frame: bytes) -> bool:
        child = self._child
        if child is None or child.stdin is None:
            return False
        try:
            os.write(child.stdin.fileno(), frame)
        except BlockingIOError:
            return False  # the child is behind: these are verified in the transaction
        except (OSError, ValueError):  # it died, or stop closed the pipe meanwhile
            return False
        return True

    def _readable(self, timeout_s: float) -> bool:
        child = self._child
        if child is None or child.stdout is None:
            return False
        try:
            return bool(select.select([child.stdout.fileno()], [], [], timeout_s)[0])
        except (OSError, ValueError):
            return False

    def _read(self) -> bool:
        """Take in what the child wrote; False once it has closed its end."""
        child = self._child
        if child is None or child.stdout is None:
            return False
        open_ = pipes.read_available(child.stdout.fileno(), self._unread)
        for ticket, alg, tried, good in pipes.records(self._unread):
            self._findings[ticket] = Verified(alg, frozenset(tried), frozenset(good))
        return open_


def _der(key: wire.PublicKey) -> bytes:
    return key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)


_KEYS: dict[str, wire.PublicKey] = {}  # the child's: by certificate serial


def answer(job: tuple[Any, ...]) -> bytes | None:
    """The child's part: one order's finding, as a record (None when there is nothing to say)."""
    ticket, raw, serials, new_keys = job
    for serial, der in new_keys:
        key = load_der_public_key(der)
        assert isinstance(key, wire.PublicKey)
        _KEYS[serial] = key
    verified = verify_against(raw, [(s, _KEYS[s]) for s in serials if s in _KEYS])
    if verified is None or not verified.tried:
        return None
    return pipes.record(ticket, verified.alg, tuple(verified.tried), tuple(verified.good))


if __name__ == "__main__":
    pipes.serve(answer)
