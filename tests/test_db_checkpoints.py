"""SQLite's WAL checkpoints from a thread of their own (`Database.checkpoint_in_background`)."""

import threading
from pathlib import Path

from sqlalchemy import text

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
