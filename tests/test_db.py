import logging
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from gateway.cli import _not_an_aborted_pipeline
from gateway.db import Database
from gateway.db_faults import database_fault, resource_fault
from gateway.server import free_port
from tests.support.migrations import upgrade_to


def test_migrations_create_the_audit_anchor(db: Database) -> None:
    with db.read() as conn:
        head = conn.execute(text("SELECT seq FROM chain_head WHERE name = 'audit'")).scalar_one()
    assert head == 0


def test_an_upgrade_of_an_older_schema_says_so_and_a_new_database_does_not(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Migrations run as `kym serve` starts; one that copies a large table takes minutes."""
    older = f"sqlite:///{tmp_path / 'old.db'}"
    upgrade_to(older, "0022_deliveries_at_index")
    with caplog.at_level(logging.INFO, logger="kym.db"):
        for url in (older, older, f"sqlite:///{tmp_path / 'new.db'}"):
            db = Database(url)
            db.migrate()
            db.dispose()
    said = [r.getMessage() for r in caplog.records if r.name == "kym.db"]
    assert len(said) == 1, said
    assert said[0].startswith("upgrading the database schema from 0022_deliveries_at_index to ")


def test_migrate_twice_is_harmless(db: Database) -> None:
    db.migrate()
    with db.read() as conn:
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    assert version


def test_a_held_connection_is_kept_between_transactions_and_replaced_once_dropped(
    db: Database,
) -> None:
    """`run(held=True)`: the thread's own connection, no ping before each transaction; when
    the server has dropped it meanwhile, the transaction fails on it and is run again on a new
    one."""
    pid = "SELECT pg_backend_pid()" if not db.is_sqlite else "SELECT 1"
    first = db.run(lambda conn: conn.execute(text(pid)).scalar_one(), held=True)
    second = db.run(lambda conn: conn.execute(text(pid)).scalar_one(), held=True)
    assert first == second  # the same session (on SQLite, trivially)
    tries: list[int] = []

    def work(conn: Connection) -> int:
        tries.append(1)
        return int(conn.execute(text(pid)).scalar_one())

    if db.is_sqlite:
        assert db.run(work, held=True) == 1 and len(tries) == 1
        return
    with db.read() as conn:  # another session ends the held one, as a server restart would
        assert conn.execute(text(f"SELECT pg_terminate_backend({first})")).scalar_one()
    third = db.run(work, held=True)
    assert third != first
    assert len(tries) == 2  # failed on the dropped connection, then ran on a new one
    assert db.run(lambda conn: conn.execute(text(pid)).scalar_one(), held=True) == third


def test_a_held_connection_outlives_the_works_own_error_not_a_database_error(
    db: Database,
) -> None:
    """The work's own exception rolls back and keeps the connection (a batch decided again);
    a database error drops it, whatever state it left."""
    session = "SELECT pg_backend_pid()" if not db.is_sqlite else "SELECT 1"
    first = db.run(lambda conn: conn.execute(text(session)).scalar_one(), held=True)
    held = db._held.conn

    def refuse(conn: Connection) -> None:
        conn.execute(text("SELECT 1"))
        raise LookupError("the work's own")

    with pytest.raises(LookupError):
        db.run(refuse, held=True)
    assert db._held.conn is held and not held.closed
    assert db.run(lambda conn: conn.execute(text(session)).scalar_one(), held=True) == first
    with pytest.raises(DBAPIError):
        db.run(lambda conn: conn.execute(text("SELECT * FROM no_such_table")), held=True)
    assert held.closed and db._held.conn is None
    db.run(lambda conn: conn.execute(text(session)).scalar_one(), held=True)
    assert db._held.conn is not held


def test_a_full_database_is_a_resource_fault_that_health_remembers_and_bad_data_is_not(
    db: Database,
) -> None:
    """A write the database has no room for (SQLite's "database or disk is full", PostgreSQL's
    `disk_full`) is the database's failure (`resource_fault`), and `write_fault` says so for
    `/healthz`; a constraint the data breaks is the data's, and is not remembered."""
    with pytest.raises(DBAPIError) as full, db.transaction() as conn:
        if db.is_sqlite:
            conn.exec_driver_sql("PRAGMA max_page_count = 1")  # no page beyond those it has
            conn.exec_driver_sql("CREATE TABLE filler (b BLOB)")
            conn.exec_driver_sql("INSERT INTO filler VALUES (zeroblob(1000000))")
        else:  # as the server raises it when it cannot extend a file
            conn.exec_driver_sql(
                "DO $$ BEGIN RAISE EXCEPTION 'could not extend file: No space left on device'"
                " USING ERRCODE = 'disk_full'; END $$"
            )
    assert resource_fault(full.value)
    fault = db.write_fault()
    assert fault in ("database or disk is full", "could not extend file: No space left on device")
    assert db.write_fault(within_s=0) is None  # only for a while: it is not known to last

    with pytest.raises(DBAPIError) as broken, db.transaction() as conn:
        conn.exec_driver_sql("CREATE TEMPORARY TABLE once (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql("INSERT INTO once VALUES (1), (1)")
    assert not resource_fault(broken.value)


def test_a_lost_or_refused_session_is_the_databases_fault_and_an_error_of_the_sql_is_not(
    db: Database,
) -> None:
    """A session the server ends (as every session ends when PostgreSQL PANICs for want of WAL
    room) and a server that refuses connections are the database's failures
    (`database_fault`); a statement the database cannot run is not, on either database."""
    if not db.is_sqlite:
        with pytest.raises(DBAPIError) as ended, db.transaction() as conn:
            conn.exec_driver_sql("SELECT pg_terminate_backend(pg_backend_pid())")
        assert database_fault(ended.value) and not resource_fault(ended.value)
        refused = Database(f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/kym")
        with pytest.raises(DBAPIError) as down, refused.transaction() as conn:
            conn.exec_driver_sql("SELECT 1")
        refused.dispose()
        assert database_fault(down.value)

    with pytest.raises(DBAPIError) as unknown, db.transaction() as conn:
        conn.exec_driver_sql("SELECT * FROM no_such_table")
    assert not database_fault(unknown.value)
    with pytest.raises(DBAPIError) as broken, db.transaction() as conn:
        conn.exec_driver_sql("CREATE TEMPORARY TABLE twice (id INTEGER PRIMARY KEY)")
        conn.exec_driver_sql("INSERT INTO twice VALUES (1), (1)")
    assert not database_fault(broken.value)


def test_psycopgs_note_after_an_aborted_pipeline_is_dropped_from_kyms_log() -> None:
    """A statement that fails in a pipeline (each retry of a batch on a full disk) makes
    psycopg log "error ignored terminating ...: pipeline aborted" besides the error it raises,
    but not every time (it depends on when the answers come, so a test cannot count on
    provoking it); `kym`'s log drops that note, made here as psycopg makes it (its message and
    arguments, `psycopg._pipeline`), and keeps psycopg's other warnings."""

    def note(message: str, error: Exception) -> logging.LogRecord:
        return logging.LogRecord(
            "psycopg", logging.WARNING, __file__, 1, message, ("<Pipeline>", error), None
        )

    aborted = psycopg.errors.PipelineAborted("pipeline aborted")
    assert not _not_an_aborted_pipeline(note("error ignored terminating %r: %s", aborted))
    other_error = psycopg.errors.DiskFull("could not extend file")
    assert _not_an_aborted_pipeline(note("error ignored terminating %r: %s", other_error))
    assert _not_an_aborted_pipeline(note("something else about %r: %s", aborted))
