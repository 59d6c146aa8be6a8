import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from gateway.db import Database


def test_migrations_create_the_audit_anchor(db: Database) -> None:
    with db.read() as conn:
        head = conn.execute(text("SELECT seq FROM chain_head WHERE name = 'audit'")).scalar_one()
    assert head == 0


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
