"""PostgreSQL's disk fills up under a steady stream of orders, then an operator frees room (and
starts the cluster again if it went down): every acknowledged order is decided once, none is
`rejected` for the database's trouble, `/healthz` says 503 meanwhile and 200 after, and the log
is not flooded.

The cluster is the test's own, its data directory on a tmpfs the test mounts (as root, as the
suite runs here) and fills with a file of zeros. PostgreSQL fails a statement that cannot
extend a data file with `disk_full` (53100), and PANICs when it cannot write a WAL segment:
every session ends, and the cluster restarts, or stays down while there is no room for the end
of its recovery (docs/durability.md).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from gateway.db_faults import one_line
from tests.faults.fleet import (
    Device,
    Stream,
    all_acknowledged,
    assert_decided_once,
    final_results,
    report,
    running_fleet,
)
from tests.faults.processes import (
    PG_BIN,
    Gateway,
    Mosquitto,
    Postgres,
    postgres_tools_available,
)
from tests.support.disk import fill, tmpfs
from tests.support.services import unavailable

pytestmark = [pytest.mark.slow, pytest.mark.mosquitto, pytest.mark.postgres]
DEVICES = 4
PERIOD_S = 0.1
DISK_MB = 96
FULL_FOR_S = 8.0
MAX_TRACEBACKS = 5  # a traceback a round of any thread would be hundreds in FULL_FOR_S


@pytest.fixture
def cluster_on_small_disk(tmp_path: Path) -> Iterator[Postgres]:
    """A PostgreSQL 15 cluster whose data directory is on a tmpfs of DISK_MB of its own (in
    /tmp: the `postgres` user cannot reach into pytest's temp dirs); the cluster is stopped
    and the tmpfs unmounted and removed whatever happens."""
    if not postgres_tools_available():
        unavailable("PostgreSQL 15 initdb/pg_ctl and runuser")
    disk = Path(tempfile.mkdtemp(prefix="kym-faults-pgdisk-"))
    try:
        with tmpfs(disk, DISK_MB):
            try:
                shutil.chown(disk, "postgres", "postgres")
                yield Postgres(root=disk)
            finally:
                _stop_and_keep_log(disk, tmp_path / "postgres.log")
    finally:
        disk.rmdir()


def _stop_and_keep_log(disk: Path, log: Path) -> None:
    """Whether or not the cluster came up, or is still up: nothing runs on the tmpfs after;
    its log is kept for a failure's reader."""
    if (disk / "log").exists():
        log.write_text((disk / "log").read_text(errors="replace"))
    stop = [str(PG_BIN / "pg_ctl"), "-D", str(disk / "data"), "-m", "immediate", "-w", "stop"]
    subprocess.run(["runuser", "-u", "postgres", "--", *stop], capture_output=True, check=False)


def healthz(gateway: Gateway) -> int | None:
    try:
        return httpx.get(f"{gateway.url}/healthz", timeout=2).status_code
    except httpx.HTTPError:
        return None


def put_rules(gateway: Gateway, device: Device) -> tuple[int, str | None]:
    """An owner's write over HTTP (the rules the device has): the status and error code."""
    answer = httpx.put(
        f"{gateway.url}/v1/devices/{device.id}/rules",
        json={"currency": "EUR"},
        headers={"Authorization": f"Bearer {device.owner_key}"},
        timeout=30,
    )
    return answer.status_code, answer.json().get("error", {}).get("code")


class Listener(threading.Thread):
    """An owner's event stream, opened again a second after it ends, as a browser's
    EventSource does; counts the streams opened and the events read."""

    def __init__(self, gateway: Gateway, device: Device) -> None:
        super().__init__(daemon=True)
        self.url, self.key = f"{gateway.url}/v1/events/stream", device.owner_key
        self.stopping = threading.Event()
        self.statuses: list[int] = []
        self.events = 0

    def run(self) -> None:
        headers = {"Authorization": f"Bearer {self.key}"}
        while not self.stopping.is_set():
            try:
                timeout = httpx.Timeout(5, read=2)
                with httpx.stream("GET", self.url, headers=headers, timeout=timeout) as answer:
                    self.statuses.append(answer.status_code)
                    for line in answer.iter_lines():
                        self.events += line.startswith("event:")
                        if self.stopping.is_set():
                            return
            except httpx.HTTPError:
                pass
            self.stopping.wait(1.0)

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


def rejected(fleet: list[Device]) -> list[tuple[str, str, object]]:
    return [
        (d.id, order_id, answer)
        for d in fleet
        for order_id, answers in final_results(d).items()
        for answer in answers
        if answer[0] == "rejected"
    ]


def switch_wal(cluster: Postgres) -> None:
    """Close the WAL segment being written, so that the next write needs a new one. On a full
    disk the switch may itself fail to make the new segment (an ERROR, `disk_full`, seen in CI)
    or PANIC the server: either way the WAL has no room, and the gateway's next write PANICs
    it (the test checks the server's log for that)."""
    engine = create_engine(cluster.url("postgres"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_switch_wal()"))
    except DBAPIError as exc:
        print(f"pg_switch_wal on the full disk: {one_line(exc)}")
    finally:
        engine.dispose()


@pytest.mark.parametrize("full", ["data", "wal"])
def test_a_full_postgresql_disk_keeps_orders_waiting_and_loses_none(
    mosquitto: Mosquitto, cluster_on_small_disk: Postgres, tmp_path: Path, full: str
) -> None:
    """`data`: the disk fills, and a data file that cannot grow fails its statement; `wal`:
    the WAL needs a new segment too, and the server PANICs."""
    cluster = cluster_on_small_disk
    database = cluster.url()
    gateway = Gateway(tmp_path / "data", database, broker_url=mosquitto.url)
    with running_fleet(gateway, tmp_path / "devices", DEVICES, mosquitto.port, None) as (
        fleet,
        merchant,
    ):
        stream, listener = Stream(fleet, merchant, PERIOD_S), Listener(gateway, fleet[0])
        stream.start()
        listener.start()
        try:
            time.sleep(2.0)
            filler = fill(cluster.root)
            if full == "wal":
                switch_wal(cluster)
            seen: list[int | None] = []
            deadline = time.monotonic() + FULL_FOR_S
            while time.monotonic() < deadline:
                seen.append(healthz(gateway))
                time.sleep(0.25)
            owner_write = put_rules(gateway, fleet[0])
            went_down = not cluster.running()
            filler.unlink()
            if went_down:
                cluster.start()  # as an operator would, once there is room
            gateway.wait_healthy(60)
            time.sleep(2.0)
        finally:
            stream.stop()
            listener.stop()
        orders = all_acknowledged(fleet, "every order is acknowledged by the broker")
        report(f"FAULTS postgresql-disk-full-{full}: healthz={sorted(set(map(str, seen)))} "
               f"went_down={went_down} owner_write={owner_write} "
               f"streams={len(listener.statuses)} events={listener.events}")  # fmt: skip
        assert_decided_once(fleet, gateway, database, orders, f"postgresql-disk-full-{full}", 90)
    assert 503 in seen and 200 not in seen[len(seen) // 2 :], (seen, gateway.tail_of_log())
    # a small write may still fit; one that does not is the database's 503, never a 500
    assert owner_write in ((200, None), (503, "database_unavailable")), owner_write
    assert not rejected(fleet), (rejected(fleet)[:5], gateway.tail_of_log())
    log = gateway.log_path.read_text(errors="replace")
    assert log.count("Traceback") <= MAX_TRACEBACKS, gateway.tail_of_log(80)
    assert log.count("pipeline aborted") <= MAX_TRACEBACKS, gateway.tail_of_log(80)
    assert "Exception in ASGI application" not in log, gateway.tail_of_log(80)  # a stream's end
    made = "PANIC:  could not write" if full == "wal" else "No space left on device"
    assert made in cluster.log(), "the disk did not fill as meant"
