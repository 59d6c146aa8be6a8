"""A broker child process that dies with `kym serve`, never coexists with one left by a killed
`kym serve`, and is restarted with backoff when it dies alone.

- Parent death: the child gets SIGTERM when its parent dies (`prctl(PR_SET_PDEATHSIG)` in a
  `preexec_fn`), even after a SIGKILL of the parent. Linux sends it when the *thread* that
  forked the child ends, so every start and restart happens on the supervisor's own thread,
  which lives until `stop`.
- Pidfile: `WORKDIR/mosquitto.pid` names the running child. At start, a process it names that
  still runs this command line (the same configuration file) is a leftover of a killed parent
  (one started before the death signal was armed, or kept alive by a subreaper): it is stopped,
  so that no broker keeps serving with an old CRL. If the port is still taken afterwards, start
  fails loudly rather than report a broker that is not ours.
- Restart: when the child exits and `stop` was not asked, it is started again after 0.5 s,
  doubling up to 10 s, back to 0.5 s once a run lasted 30 s. `prepare` runs before every start
  (the configuration is rewritten then, with the current CRL and devices).
- Start wait: a child that exits before it listens fails the start at once. One that is alive
  and not listening yet after `timeout_s` is still loading (Mosquitto reads its whole
  dynsec.json before it opens its listener: minutes for a million devices), so it is waited
  for up to `patience()` seconds in all, with a log line saying so, then killed.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import logging
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path

log = logging.getLogger("kym.mosquitto")
_PR_SET_PDEATHSIG = 1
BACKOFF_MIN_S, BACKOFF_MAX_S, STABLE_S = 0.5, 10.0, 30.0


def _die_with_parent(parent: int) -> Callable[[], None]:
    """A preexec_fn arming SIGTERM on the parent's death (resolved before the fork)."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os._exit(1)

    return arm


def port_open(host: str, port: int) -> bool:
    """True if something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=0.2):
            return True
    except OSError:
        return False


def _running(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"  # a zombie nobody reaped is gone


class Supervisor:
    """Runs `argv`, which must listen on host:port, until `stop`."""

    def __init__(
        self,
        argv: list[str],
        host: str,
        port: int,
        workdir: Path,
        *,
        prepare: Callable[[], None],
        guard: AbstractContextManager[object],
        patience: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self.argv, self.host, self.port = argv, host, port
        self.pidfile = workdir / "mosquitto.pid"
        self.logfile = workdir / "mosquitto.log"
        self._prepare, self._guard, self._patience = prepare, guard, patience
        self.process: subprocess.Popen[bytes] | None = None
        self.restarts = 0
        self._listening = False
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self, timeout_s: float) -> None:
        """Start the child on the supervisor's thread; returns once it listens (or raises)."""
        ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._run, args=(ready, timeout_s), name="kym-mosquitto", daemon=True
        )
        self._thread.start()
        ready.result()  # `_run` always settles it: every step of `_spawn` is bounded

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop supervising and stop the child (SIGTERM, SIGKILL after `timeout_s`)."""
        self._stopping.set()
        with self._guard:
            process = self.process
            if process is not None and process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=timeout_s)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            self._listening = False
            self.pidfile.unlink(missing_ok=True)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def alive(self) -> bool:
        """True while the child runs and has been seen listening."""
        process = self.process
        return self._listening and process is not None and process.poll() is None

    def signal(self, signum: int) -> None:
        """Send `signum` to the running child, if any."""
        process = self.process
        if process is not None and process.poll() is None:
            process.send_signal(signum)
            time.sleep(0.2)  # let the broker's loop handle it before anything depends on it

    def _run(self, ready: concurrent.futures.Future[None], timeout_s: float) -> None:
        try:
            self._spawn(timeout_s)
        except BaseException as exc:
            ready.set_exception(exc)
            return
        ready.set_result(None)
        delay = BACKOFF_MIN_S
        while True:
            process, started = self.process, time.monotonic()
            assert process is not None
            code = process.wait()
            self._listening = False
            if self._stopping.is_set():
                return
            if time.monotonic() - started > STABLE_S:
                delay = BACKOFF_MIN_S
            log.error(
                "mosquitto (pid %d) exited with %s; restarting in %.1f s", process.pid, code, delay
            )
            if self._stopping.wait(delay):
                return
            delay = min(delay * 2, BACKOFF_MAX_S)
            try:
                self._spawn(timeout_s)
                self.restarts += 1
                log.warning("mosquitto restarted (pid %d)", self.process.pid)  # type: ignore[union-attr]
            except Exception:  # noqa: BLE001 - tried again after the next backoff
                log.exception("could not restart mosquitto; see %s", self.logfile)

    def _spawn(self, timeout_s: float) -> None:
        with self._guard:
            if self._stopping.is_set():
                return
            self._stop_leftover()
            if port_open(self.host, self.port):
                raise RuntimeError(f"{self.host}:{self.port} is in use by another process")
            self._prepare()
            with self.logfile.open("ab") as out:
                self.process = subprocess.Popen(
                    self.argv,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    # a session of its own: a Ctrl-C (or a SIGTERM to the process group) meant
                    # for `kym serve` must not stop the broker behind the supervisor's back
                    # and be taken for a crash; the supervisor stops it, last
                    start_new_session=True,
                    preexec_fn=_die_with_parent(os.getpid()),  # noqa: PLW1509 - see the module
                )
            self.pidfile.write_text(f"{self.process.pid}\n")
            self._wait_listening(self.process, timeout_s)

    def _wait_listening(self, process: subprocess.Popen[bytes], timeout_s: float) -> None:
        started = time.monotonic()
        deadline, extended = started + timeout_s, False
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"mosquitto exited at start; see {self.logfile}")
            if port_open(self.host, self.port):
                self._listening = True
                return
            if time.monotonic() >= deadline:
                if extended or (limit := max(timeout_s, self._patience())) <= timeout_s:
                    break
                deadline, extended = started + limit, True
                log.warning(
                    "mosquitto (pid %d) runs but does not listen on %s:%d after %.0f s: "
                    "waiting up to %.0f s in all while it loads its configuration and dynsec.json",
                    process.pid, self.host, self.port, timeout_s, limit,
                )  # fmt: skip
            time.sleep(0.05)
        process.kill()
        process.wait()
        waited = time.monotonic() - started
        raise RuntimeError(f"mosquitto did not listen on {self.host}:{self.port} in {waited:.0f} s")

    def _stop_leftover(self) -> None:
        """Stop the process the pidfile names if it runs our command line."""
        try:
            pid = int(self.pidfile.read_text().split()[0])
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            self.pidfile.unlink(missing_ok=True)
            return
        args = [arg.decode(errors="replace") for arg in cmdline if arg]
        if args[1:] != self.argv[1:] or Path(args[0]).name != Path(self.argv[0]).name:
            self.pidfile.unlink(missing_ok=True)  # that pid is someone else's by now
            return
        if not _running(pid) or (self.process is not None and self.process.pid == pid):
            return
        log.warning("stopping mosquitto (pid %d), left running by an earlier kym serve", pid)
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 5
        while _running(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        if _running(pid):
            os.kill(pid, signal.SIGKILL)
            while _running(pid):
                time.sleep(0.05)
        self.pidfile.unlink(missing_ok=True)
