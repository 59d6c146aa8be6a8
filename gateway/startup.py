"""What `kym serve` claims and checks before it starts anything: its data dir (one serve at a
time), the HTTP API's port and the gateway identities its workers need; and a Ctrl-C during
start-up that must not get lost."""

from __future__ import annotations

import errno
import fcntl
import os
import socket
from contextlib import ExitStack

from gateway.broker.dynsec import GATEWAY_IDENTITIES
from gateway.settings import Settings, split_host_port


class DataDirInUse(RuntimeError):
    """Another `kym serve` runs the broker of this data dir."""


def claim_data_dir(settings: Settings, stack: ExitStack) -> None:
    """Only one `kym serve` at a time runs the broker of a data dir: a second one started on
    it (without --broker-url) is refused before it touches anything, rather than taking the
    running one's Mosquitto for a leftover and stopping it. The claim is an `flock` on
    DIR/serve.lock, held until `stack` closes; the kernel drops it when the process dies
    however it dies, so a SIGKILLed `kym serve` never holds up the next one. Processes that
    share a broker given with --broker-url share the data dir too, and claim nothing."""
    if settings.broker_url:
        return
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = settings.data_dir / "serve.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)  # not inherited by child processes
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.read(fd, 32).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise DataDirInUse(
            f"{settings.data_dir} is in use: kym serve (pid {holder}) runs its broker. Stop "
            "that one first, give this one another --data-dir, or share its broker with "
            "--broker-url and --worker-index"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    stack.callback(os.close, fd)


def bind_http(settings: Settings) -> socket.socket:
    """The HTTP API's listening socket, bound before the broker and the workers start: a port
    in use is one line and exit 2 at once (uvicorn found it only after everything had started,
    logged it and exited 3)."""
    host, port = split_host_port(settings.http, 8080)
    family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0][0]
    try:
        return socket.create_server((host, port), family=family)
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise RuntimeError(
                f"--http {settings.http} is in use by another process: stop it, or give "
                "another --http HOST:PORT"
            ) from None
        raise


def check_identities(settings: Settings) -> None:
    """Each worker needs a gateway identity of its own, and there are GATEWAY_IDENTITIES."""
    first, count = settings.worker_index, settings.gateway_workers
    if first + count > GATEWAY_IDENTITIES:
        raise ValueError(
            f"--worker-index {first} + --workers {count} must stay within the "
            f"{GATEWAY_IDENTITIES} gateway identities (kym-gateway-0 to "
            f"-{GATEWAY_IDENTITIES - 1})"
        )


class Interrupts:
    """SIGINT while `kym serve` starts: a KeyboardInterrupt, as Python's own handler raises, and
    remembered: one raised inside a garbage collector's callback is printed and dropped
    ("Exception ignored in ..."), and start-up went on to serve as if no Ctrl-C came."""

    def __init__(self) -> None:
        self.seen = False

    def __call__(self, _signum: int, _frame: object) -> None:
        self.seen = True
        raise KeyboardInterrupt
