"""The database adapter: SQLite and PostgreSQL engines, migrations, one transaction per use case.

SQLite runs in WAL mode with `synchronous=NORMAL`: a commit survives a crash of the process, and
the last commits before a power loss may be lost (never half-applied). Writes open with
`BEGIN IMMEDIATE`, so a check and the write that depends on it are serialised. `kym serve`
checkpoints the WAL from a thread of its own (`checkpoint_in_background`), so that no commit of
the order path pays for a checkpoint (which syncs the database file: 5-9 ms in about one
commit in ten of small batches).
A check (`kym ledger check`, `kym audit verify`) may open a SQLite file read-only
(`read_only_sqlite`): a copy from a backup that this process cannot write, or in a directory it
cannot write, where WAL mode could not make its `-wal` and `-shm` files.
PostgreSQL runs at READ COMMITTED; money moves with conditional updates, and a transaction that
fails with a serialization failure or deadlock (SQLSTATE 40001, 40P01) is retried.
A write that fails because the database ran out of room or could not do its I/O (a full disk,
`out_of_memory`: `resource_fault`) is the database's failure, never the data's: the order path
keeps such orders and tries again, and `/healthz` says so (`write_fault`) until none has failed
for WRITE_FAULT_FOR_S.
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, OperationalError

from gateway.db_faults import FAULT_LOG_EVERY_S, one_line, resource_fault

log = logging.getLogger("kym.db")
T = TypeVar("T")

RETRYABLE_SQLSTATES = {"40001", "40P01"}
WRITE_FAULT_FOR_S = 10.0  # /healthz reports a write fault this long after the last one
CHECKPOINT_EVERY_S = 0.2
# Past this many frames (pages of 4 KiB: 256 MB) in the WAL, the checkpointer restarts it; at
# 2,200 orders a second that is every 2.5 s or so. A steady writer's WAL stops there; at low
# rates it restarts by itself whenever a checkpoint catches up between two writes.
RESTART_WAL_FRAMES = 65536
RESTART_WAIT_MS = 20  # for readers of older snapshots, the writers held off meanwhile
RESTART_BACKOFF_S = 5.0  # after such a reader kept the WAL from restarting
WRITER_WAIT_S = 30.0  # as SQLite's busy_timeout
MIGRATIONS = Path(__file__).parent / "migrations"
# A write that changes nothing (`takes_writes`): the cache counter's row set to itself.
_NO_OP_WRITE = "UPDATE cache_versions SET version = version WHERE id = 1"


class _RolledBack(Exception):
    """Ends `takes_writes`'s transaction with a rollback."""


class Database:
    """An engine plus the rules for opening transactions on it."""

    def __init__(self, url: str, *, echo: bool = False, read_only: bool = False) -> None:
        """`read_only`: a SQLite file is opened read-only (`read_only_sqlite`); for checks."""
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.engine = _create_engine(url, echo=echo, read_only=read_only)
        self._checkpointing: threading.Event | None = None  # set to stop the thread
        # SQLite: this process's writers queue here for the write lock, woken the moment it is
        # free. Waiting in SQLite's own busy handler instead sleeps 1, 2, 5, 10, 15, 20, 25...
        # ms between tries whatever the holder does: a batch of orders that met the
        # housekeeper's 2 ms update slept 30 ms and more (the flood benchmark's stalls).
        self._writer = threading.RLock() if self.is_sqlite else None
        self._held = threading.local()  # a thread's own connection (`transaction(held=True)`)
        self._all_held: list[Connection] = []  # closed by `dispose`
        self._held_lock = threading.Lock()
        self._write_fault: tuple[float, str] | None = None  # (monotonic time, what failed)

    def write_fault(self, within_s: float = WRITE_FAULT_FOR_S) -> str | None:
        """Why a write failed for lack of room or I/O (`resource_fault`) less than `within_s`
        ago, else None. Not cleared by a write that succeeds meanwhile: on a full disk, a small
        write still fits in the WAL's pages while a batch of orders does not."""
        fault = self._write_fault
        if fault is None or time.monotonic() - fault[0] >= within_s:
            return None
        return fault[1]

    @contextmanager
    def transaction(self, *, held: bool = False) -> Iterator[Connection]:
        """One write transaction: commits when the block ends, rolls back on an exception.

        `held`: on this thread's own connection, kept open between its transactions (an MQTT
        worker's): no pool checkout and no ping before each. On PostgreSQL the ping is a
        round trip a batch; without it a connection the server dropped meanwhile fails its
        first statement instead, `run` retries on a new one; any other database error drops it
        too (an exception of the work's own, after the rollback, does not).
        """
        queued = self._writer.acquire(timeout=WRITER_WAIT_S) if self._writer else False
        try:  # SQLite: queued for the write lock here, else its busy handler decides
            with self._noting_faults():
                if not held:
                    with self.engine.begin() as conn:
                        yield conn
                    return
                conn = self._held_connection()
                try:
                    with conn.begin():
                        yield conn
                except Exception as exc:
                    if conn.invalidated or isinstance(exc, DBAPIError | self._driver_error):
                        self._drop_held(conn)  # else rolled back, and as good as before
                    raise
                except BaseException:  # interrupted anywhere: its state is unknown
                    self._drop_held(conn)
                    raise
        finally:
            if queued:
                self._writer.release()  # type: ignore[union-attr]

    @contextmanager
    def _noting_faults(self) -> Iterator[None]:
        """A write transaction's resource fault, for `write_fault`."""
        try:
            yield
        except Exception as exc:
            if resource_fault(exc):
                self._write_fault = (time.monotonic(), one_line(exc))
            raise

    @property
    def _driver_error(self) -> type[Exception]:
        return self.engine.dialect.loaded_dbapi.Error

    def _held_connection(self) -> Connection:
        conn: Connection | None = getattr(self._held, "conn", None)
        if conn is None or conn.closed:
            conn = self._held.conn = self.engine.connect()
            with self._held_lock:
                self._all_held.append(conn)
        return conn

    def _drop_held(self, conn: Connection) -> None:
        self._held.conn = None
        with self._held_lock:
            if conn in self._all_held:
                self._all_held.remove(conn)
        try:
            conn.invalidate()  # never back into the pool: its state is unknown
            conn.close()
        except Exception:  # noqa: BLE001 - it is being thrown away
            log.debug("closing a dropped connection failed", exc_info=True)

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction (deferred on SQLite, so it never waits for the write lock)."""
        with self.engine.connect().execution_options(kym_read=True) as conn, conn.begin():
            yield conn

    @contextmanager
    def snapshot(self) -> Iterator[Connection]:
        """A read-only transaction that sees one moment (REPEATABLE READ on PostgreSQL), for
        checks that run many queries while the gateway keeps writing."""
        options: dict[str, Any] = {"kym_read": True}
        if not self.is_sqlite:
            options["isolation_level"] = "REPEATABLE READ"
        with self.engine.connect().execution_options(**options) as conn, conn.begin():
            yield conn

    def takes_writes(self) -> bool:
        """Whether a write transaction can be made now: a write that changes nothing, rolled
        back. A SELECT is not enough to tell: a read-only PostgreSQL (a standby after a
        failover, `default_transaction_read_only`) or another process holding SQLite's write
        lock answer one, and then every write fails, whatever it writes."""
        try:
            with self.transaction() as conn:  # queued for SQLite's write lock as any writer
                conn.exec_driver_sql(_NO_OP_WRITE)
                raise _RolledBack
        except _RolledBack:
            return True
        except Exception:  # noqa: BLE001 - any failure means "not now"
            return False

    def run(self, work: Callable[[Connection], T], *, attempts: int = 8, held: bool = False) -> T:
        """Run `work(conn)` in one transaction, retrying on serialization failures and
        deadlocks; `held`: on this thread's own connection (`transaction`), retrying once
        more on a new one when the server had dropped it."""
        for attempt in range(1, attempts + 1):
            try:
                with self.transaction(held=held) as conn:
                    return work(conn)
            except (DBAPIError, OperationalError) as exc:
                dropped = held and attempt == 1 and exc.connection_invalidated
                if attempt == attempts or not (dropped or _is_retryable(exc)):
                    raise
                time.sleep(random.uniform(0, 0.002 * 2**attempt))
        raise AssertionError("unreachable")

    def migrate(self) -> None:
        """Bring the schema to the newest migration (safe to run from several processes)."""
        with self.engine.begin() as conn:
            if not self.is_sqlite:
                conn.exec_driver_sql("SELECT pg_advisory_xact_lock(7401)")
            config = Config()
            config.set_main_option("script_location", str(MIGRATIONS))
            config.attributes["connection"] = conn
            current = MigrationContext.configure(conn).get_current_revision()
            head = ScriptDirectory.from_config(config).get_current_head()
            if current is not None and current != head:  # a new database is quick to make
                log.info(
                    "upgrading the database schema from %s to %s (a large database takes a "
                    "while: on SQLite about 15 s for a million results in the outbox)",
                    current,
                    head,
                )
            command.upgrade(config, "head")

    def checkpoint_in_background(self, every_s: float = CHECKPOINT_EVERY_S) -> None:
        """SQLite: connections stop checkpointing the WAL when a commit fills it, and a daemon
        thread checkpoints it (PASSIVE: never waits for writers) every `every_s`, until
        `dispose`. Nothing on PostgreSQL."""
        if not self.is_sqlite or self._checkpointing is not None:
            return
        stop = self._checkpointing = threading.Event()
        event.listen(self.engine, "connect", _no_autocheckpoint)
        self.engine.dispose()  # pooled connections reopen without it
        threading.Thread(
            target=_checkpoint_until, args=(self.engine, self._writer, stop, every_s), daemon=True,
            name="kym-sqlite-checkpoint",
        ).start()  # fmt: skip

    def dispose(self) -> None:
        """Close every pooled connection (and stop the checkpoints)."""
        if self._checkpointing is not None:
            self._checkpointing.set()
        with self._held_lock:
            held, self._all_held = self._all_held, []
        for conn in held:
            conn.close()
        self.engine.dispose()


def upsert(conn: Connection, table: sa.Table, values: dict[str, Any]) -> None:
    """Insert the row, or update the one with its primary key: one statement, so two
    requests at once never both insert (a DELETE then an INSERT did, and the second failed on
    the key: a 500)."""
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    key = [column.name for column in table.primary_key]
    statement = dialect.insert(table).values(**values)
    changed = {name: statement.excluded[name] for name in values if name not in key}
    conn.execute(statement.on_conflict_do_update(index_elements=key, set_=changed))


def _is_retryable(exc: DBAPIError) -> bool:
    orig = getattr(exc, "orig", None)
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate in RETRYABLE_SQLSTATES:
        return True
    return "database is locked" in str(orig)


def sqlite_file(url: str) -> Path | None:
    """The file a SQLite URL names; None for another database, `:memory:` or a `file:` URI."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.query.get("uri"):
        return None
    name = parsed.database or ""
    return Path(name) if name and name != ":memory:" else None


def read_only_sqlite(url: str) -> bool:
    """Whether `url` names a SQLite file that this process cannot write, or that sits in a
    directory it cannot write (a copy from a backup, mode 0444, an immutable or read-only
    mount): opened as always, SQLite fails there making the `-wal` and `-shm` files."""
    path = sqlite_file(url)
    if path is None or not path.is_file():
        return False
    return not (os.access(path, os.W_OK) and os.access(path.absolute().parent, os.W_OK))


def _read_only_uri(path: Path) -> str:
    """The SQLite URI that opens `path` read-only. With a `-wal` holding commits beside it,
    `mode=ro`: SQLite reads them through the `-shm` beside it (a copy of a data dir in use).
    Without one the file holds every commit, and `immutable=1` reads it with no `-wal` or
    `-shm` and no locks (`mode=ro` would still need a `-shm`)."""
    wal = path.with_name(path.name + "-wal")
    has_commits = wal.is_file() and wal.stat().st_size > 0
    return f"{path.absolute().as_uri()}?{'mode=ro' if has_commits else 'immutable=1'}"


def _create_engine(url: str, *, echo: bool, read_only: bool = False) -> Engine:
    if not url.startswith("sqlite"):
        return create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20)
    engine = create_engine(url, echo=echo, connect_args={"check_same_thread": False, "timeout": 30})
    path = sqlite_file(url) if read_only else None
    if path is not None:
        uri = _read_only_uri(path)  # the path quoted as SQLite's URIs need it, not as URLs do

        @event.listens_for(engine, "do_connect")
        def _open_read_only(_dialect: Any, _record: Any, cargs: list[Any], cparams: Any) -> None:
            cargs[:] = [uri]
            cparams["uri"] = True

    event.listen(engine, "connect", _sqlite_on_connect if path is None else _sqlite_on_read)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any) -> None:
    _set_pragmas(dbapi_connection, ("journal_mode=WAL", "synchronous=NORMAL"))


def _sqlite_on_read(dbapi_connection: Any, _record: Any) -> None:
    _set_pragmas(dbapi_connection, ())  # the journal mode is the file's: nothing is written


def _set_pragmas(dbapi_connection: Any, writing: tuple[str, ...]) -> None:
    dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
    cursor = dbapi_connection.cursor()
    for pragma in (*writing, "foreign_keys=ON", "busy_timeout=30000"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _no_autocheckpoint(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.execute("PRAGMA wal_autocheckpoint=0")


def _checkpoint_until(
    engine: Engine, writer: threading.RLock | None, stop: threading.Event, every_s: float
) -> None:
    restart_after = 0.0  # monotonic time before which no RESTART is tried again
    said = -FAULT_LOG_EVERY_S  # when a resource fault was last logged
    while not stop.wait(every_s):
        try:
            raw = engine.raw_connection()
            try:  # autocommit (isolation_level None): outside any transaction
                due = writer is not None and time.monotonic() >= restart_after
                frames = _checkpoint_passive(raw.driver_connection)
                if due and frames >= RESTART_WAL_FRAMES and not _restart_wal(raw, writer):
                    restart_after = time.monotonic() + RESTART_BACKOFF_S
            finally:
                raw.close()
        except Exception as exc:  # noqa: BLE001 - logged; the next round tries again
            if not resource_fault(exc):
                log.warning("WAL checkpoint failed", exc_info=True)
            elif time.monotonic() - said >= FAULT_LOG_EVERY_S:  # a full disk: not 5 a second
                said = time.monotonic()
                log.warning("WAL checkpoint failed: %s", one_line(exc))


def _checkpoint_passive(connection: Any) -> int:
    """Copy the WAL's frames into the database file without waiting for anyone; the frames
    the WAL holds."""
    _, frames, _ = connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
    return int(frames)


def _restart_wal(raw: Any, writer: threading.RLock | None) -> bool:
    """Make the next write start the WAL over, between two of this process's writes; False if
    a reader of an older snapshot (another process's, say) kept it from happening.

    A PASSIVE checkpoint never ends with the WAL wholly copied while a writer keeps writing,
    and only then may the next write start the WAL over: under a steady stream of orders it
    grew without bound (2 GB in 60,000 orders, the gateway slowing by half as it grew). RESTART
    holds the writers off while it copies what the PASSIVE rounds before it left and syncs the
    file (8-24 ms at 2,200 orders/s: about a quarter of the slowest 1 % of orders met one at
    RESTART_WAL_FRAMES, half at half of it), and waits RESTART_WAIT_MS at most for older
    readers."""
    if writer is None:
        return False
    connection = raw.driver_connection
    _checkpoint_passive(connection)  # what was written meanwhile: less to copy holding writers
    if not writer.acquire(timeout=WRITER_WAIT_S):  # between two batches
        return False
    try:
        connection.execute(f"PRAGMA busy_timeout={RESTART_WAIT_MS}")
        busy, _, _ = connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
    finally:
        connection.execute(f"PRAGMA busy_timeout={int(WRITER_WAIT_S * 1000)}")
        writer.release()
    return not busy


def _sqlite_on_begin(conn: Connection) -> None:
    """BEGIN (reads) or BEGIN IMMEDIATE (writes) on the DBAPI connection itself: Core's
    execution around it cost more than the statement, once per order batch. A failure is
    raised as Core would raise it (so `Database.run` still retries "database is locked")."""
    statement = "BEGIN" if conn.get_execution_options().get("kym_read") else "BEGIN IMMEDIATE"
    dbapi = conn.dialect.loaded_dbapi
    try:
        conn.connection.driver_connection.execute(statement)  # type: ignore[union-attr]
    except dbapi.Error as error:
        dialect = conn.dialect
        raise DBAPIError.instance(statement, None, error, dbapi.Error, dialect=dialect) from error
