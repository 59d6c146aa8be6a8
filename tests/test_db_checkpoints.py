"""SQLite's WAL checkpoints from a thread of their own (`Database.checkpoint_in_background`)."""

import sqlite3
import threading
from pathlib import Path

import pytest
from sqlalchemy import text

import gateway.db
from gateway.db import Database

ROWS = 50


def _checkpointers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "kym-sqlite-checkpoint"]


def test_the_thread_checkpoints_what_commits_leave_in_the_wal(tmp_path: Path) -> None:
    path = tmp_path / "kym.db"
    db = Database(f"sqlite:///{path}")
    try:
        db.checkpoint_in_background(every_s=0.01)
        with db.read() as conn:
            assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() == 0
        with db.transaction() as conn:
            conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)"))
        for n in range(ROWS):  # about 5 MB through the WAL; no commit checkpoints any of it
            with db.transaction() as conn:
                conn.execute(text("INSERT INTO t (body) VALUES (:b)"), {"b": "x" * 4000 * n})
        written = 4000 * ROWS * (ROWS - 1) // 2
        moved = threading.Event()  # the pages reach the database file only by a checkpoint
        for _ in range(1000):
            if path.stat().st_size > written:
                moved.set()
                break
            moved.wait(0.01)
        assert moved.is_set(), path.stat().st_size
        with db.read() as conn:
            assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == ROWS
    finally:
        db.dispose()


def test_one_thread_per_database_until_it_is_disposed(tmp_path: Path) -> None:
    # Other tests' threads may still be ending meanwhile: compare the threads, not a count.
    before = set(_checkpointers())
    db = Database(f"sqlite:///{tmp_path / 'kym.db'}")
    db.checkpoint_in_background()
    db.checkpoint_in_background()  # no second thread
    started = [t for t in _checkpointers() if t not in before]
    assert len(started) == 1
    db.dispose()
    started[0].join(5)
    assert not started[0].is_alive()


def _write_steadily(db: Database, rows: int) -> int:
    """One writer that never pauses (as the order worker flat out); the WAL's largest size."""
    with db.transaction() as conn:
        conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, body TEXT)"))
    wal, largest = Path(f"{db.engine.url.database}-wal"), 0
    for _ in range(rows):
        with db.transaction() as conn:
            conn.execute(text("INSERT INTO t (body) VALUES (:b)"), {"b": "x" * 8000})
        largest = max(largest, wal.stat().st_size)
    return largest


@pytest.mark.parametrize("restart", [True, False])
def test_a_writer_that_never_pauses_does_not_grow_the_wal_for_ever(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restart: bool
) -> None:
    # 64 frames (256 KiB) before a restart; without restarts (False) the WAL only grows, so
    # that the bound below is shown to mean something.
    monkeypatch.setattr(gateway.db, "RESTART_WAL_FRAMES", 64 if restart else 10**9)
    db = Database(f"sqlite:///{tmp_path / 'kym.db'}")
    try:
        db.checkpoint_in_background(every_s=0.005)
        largest = _write_steadily(db, 4000)  # 3 pages a row: about 48 MB through the WAL
        with db.read() as conn:
            assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 4000
    finally:
        db.dispose()
    if restart:  # 8-10 MB measured, whether 36, 72 or 144 MB went through; 20 MB once, in
        # a CI run on a busy machine (the checkpointer is a thread, starved at times): bounded
        # all the same, at half of what went through, where without restarts it all stays
        assert largest < 24 * 2**20, largest
    else:
        assert largest > 40 * 2**20, largest


def test_a_reader_of_an_older_snapshot_puts_the_restart_off_without_holding_writers(
    tmp_path: Path,
) -> None:
    path = tmp_path / "kym.db"
    db = Database(f"sqlite:///{path}")
    try:
        db.checkpoint_in_background(every_s=3600)  # no autocheckpoints; no round meanwhile
        with db.transaction() as conn:
            conn.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
            conn.execute(text("INSERT INTO t (id) VALUES (1)"))
        reader = sqlite3.connect(path, isolation_level=None)  # another process's, say
        reader.execute("BEGIN")
        assert reader.execute("SELECT count(*) FROM t").fetchone() == (1,)  # in the WAL
        with db.transaction() as conn:
            conn.execute(text("INSERT INTO t (id) VALUES (2)"))
        raw = db.engine.raw_connection()
        try:
            assert not gateway.db._restart_wal(raw, db._writer)
            with db.transaction() as conn:  # the writers' lock was given back
                conn.execute(text("INSERT INTO t (id) VALUES (3)"))
            reader.execute("COMMIT")
            reader.close()
            assert gateway.db._restart_wal(raw, db._writer)
            timeout = raw.cursor().execute("PRAGMA busy_timeout").fetchone()
            assert timeout == (int(gateway.db.WRITER_WAIT_S * 1000),)  # as it was
        finally:
            raw.close()
        with db.read() as conn:
            assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 3
    finally:
        db.dispose()
