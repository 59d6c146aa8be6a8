"""The processes a fault test kills and restarts: `kym serve`, a Mosquitto configured by
`kym mosquitto-config`, and a throwaway PostgreSQL cluster of the test's own."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from sqlalchemy import create_engine, text

from gateway.server import free_port

KYM = str(Path(sys.executable).with_name("kym"))
ADMIN_TOKEN = "fault-test-admin-token"
PG_BIN = Path("/usr/lib/postgresql/15/bin")


def kym(*args: str, timeout_s: float = 60) -> subprocess.CompletedProcess[str]:
    """Run a `kym` command to completion."""
    env = os.environ | {"KYM_ADMIN_TOKEN": ADMIN_TOKEN}
    return subprocess.run(
        [KYM, *args], capture_output=True, text=True, timeout=timeout_s, env=env, check=False
    )


class Gateway:
    """`kym serve` as a child process that the test may SIGKILL at any moment."""

    def __init__(
        self,
        data_dir: Path,
        database_url: str,
        *,
        broker_url: str | None = None,
        worker_index: int = 0,
        workers: int = 1,
        broker: str = "mosquitto",
    ):
        """`worker_index`: its first identity is kym-gateway-<n> (another process sharing the
        broker and the database takes another n); `workers`: how many it runs from there;
        `broker`: the kind it runs itself when there is no `broker_url` (`--broker`)."""
        self.data_dir, self.database_url, self.broker_url = data_dir, database_url, broker_url
        self.worker_index, self.workers, self.broker = worker_index, workers, broker
        self.http_port = free_port()
        self.mqtt_port = free_port()  # used when no broker_url: the managed broker's port
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.process: subprocess.Popen[bytes] | None = None
        suffix = f"-{worker_index}" if worker_index else ""
        self.log_path = data_dir.parent / f"{data_dir.name}-serve{suffix}.log"

    def start(self) -> None:
        command = [KYM, "serve", "--data-dir", str(self.data_dir)]
        command += ["--database-url", self.database_url, "--http", f"127.0.0.1:{self.http_port}"]
        # A backlog held through several kills may exceed a device's rate, and orders over the
        # rate are not decided by design (contract section 10); these tests are about loss.
        command += ["--device-rate", "1000", "--device-burst", "100000"]
        command += ["--worker-index", str(self.worker_index), "--workers", str(self.workers)]
        if self.broker_url:
            command += ["--broker-url", self.broker_url]
        else:
            command += ["--mqtt", f"127.0.0.1:{self.mqtt_port}", "--broker", self.broker]
        env = os.environ | {"KYM_ADMIN_TOKEN": ADMIN_TOKEN}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
            )

    def wait_healthy(self, timeout_s: float = 30) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None and self.process.poll() is None, self.tail_of_log()
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"kym serve not healthy in {timeout_s} s\n{self.tail_of_log()}")

    def kill(self) -> None:
        """SIGKILL: no handler runs, nothing is flushed or closed."""
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def tail_of_log(self, lines: int = 40) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class Mosquitto:
    """A Mosquitto configured by `kym mosquitto-config` on a free port, outliving gateways."""

    def __init__(self, binary: str, data_dir: Path, outdir: Path) -> None:
        self.binary, self.port = binary, free_port()
        done = kym(
            "mosquitto-config", "--data-dir", str(data_dir), "--listen",
            f"127.0.0.1:{self.port}", "--out", str(outdir),
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        self.conf = outdir / "mosquitto.conf"
        text_ = self.conf.read_text()
        assert "persistence true" in text_, "kym mosquitto-config must keep queued messages"
        self.log_path = outdir / "mosquitto.log"
        self.url = f"mqtts://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [self.binary, "-c", str(self.conf)], stdout=log, stderr=subprocess.STDOUT
            )
        _wait_for_port(self.port, lambda: self.process is not None and self.process.poll() is None)

    def stop(self) -> None:
        """SIGTERM: Mosquitto saves its persistence file on the way out."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(15)


class Postgres:
    """A PostgreSQL 15 cluster in a temp dir (or in `root`, a directory of the test's) on a
    free port, run as the `postgres` user."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or Path(tempfile.mkdtemp(prefix="kym-faults-pg-"))
        shutil.chown(self.root, "postgres", "postgres")
        self.data, self.port = self.root / "data", free_port()
        self._as_postgres(PG_BIN / "initdb", "-D", self.data, "-A", "trust", "-U", "postgres")
        self.start()
        engine = create_engine(self.url("postgres"), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("CREATE DATABASE kym"))
        engine.dispose()

    def url(self, database: str = "kym") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=on"
        self._as_postgres(
            PG_BIN / "pg_ctl", "-D", self.data, "-o", options, "-l", self.root / "log", "-w",
            "start",
        )  # fmt: skip

    def stop(self, mode: str = "fast") -> None:
        self._as_postgres(PG_BIN / "pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def running(self) -> bool:
        """Whether the postmaster runs (`pg_ctl status`), in recovery or not."""
        command = ["runuser", "-u", "postgres", "--", str(PG_BIN / "pg_ctl"), "-D", str(self.data)]
        done = subprocess.run([*command, "status"], capture_output=True, timeout=30, check=False)
        return done.returncode == 0

    def log(self) -> str:
        path = self.root / "log"
        return path.read_text(errors="replace") if path.exists() else ""

    def destroy(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def _as_postgres(self, *args: object) -> None:
        command = ["runuser", "-u", "postgres", "--", *map(str, args)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
        assert done.returncode == 0, f"{command}: {done.stdout}{done.stderr}"


def postgres_tools_available() -> bool:
    return (PG_BIN / "initdb").exists() and shutil.which("runuser") is not None


def _wait_for_port(port: int, alive: object, timeout_s: float = 10) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert callable(alive) and alive(), f"the process for port {port} exited"
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise AssertionError(f"nothing listens on {port}")
