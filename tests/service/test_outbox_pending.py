"""What is left to publish is `outbox_pending` (migration 0023): each result enters it with its
outbox row, in the decision's transaction, and leaves it when the broker acknowledged it; the
outbox rows themselves are never updated. The migration carries what was unpublished both ways."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from gateway.context import Context
from gateway.db import Database
from gateway.orders import store as order_store
from tests.audit.test_store import empty_database_url  # noqa: F401 (a fixture)
from tests.support.migrations import database_at, downgrade_to

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=1)


def pending(conn: sa.Connection) -> list[int]:
    return sorted(conn.execute(sa.text("SELECT id FROM outbox_pending")).scalars())


def outbox_rows(conn: sa.Connection) -> list[tuple[int, str, str]]:
    return [tuple(row) for row in conn.execute(sa.text("SELECT id, topic, jws FROM outbox"))]


def test_a_result_is_pending_from_its_commit_until_the_broker_acknowledged_it(
    ctx: Context,
) -> None:
    items = [("kym/v1/devices/a/results", "t1"), ("kym/v1/devices/b/results", "t2")] * 2
    ids = ctx.db.run(lambda conn: order_store.enqueue(conn, items, NOW))
    assert len(set(ids)) == 4  # equal items get ids of their own
    with ctx.db.read() as conn:
        assert pending(conn) == sorted(ids)
        assert order_store.count_unpublished(conn) == 4
        assert order_store.unpublished(conn, NOW - timedelta(seconds=1)) == []  # not yet stale
        stale = order_store.unpublished(conn, LATER)
        before = outbox_rows(conn)
    assert [i for i, _, _ in stale] == sorted(ids)
    assert {(t, j) for _, t, j in stale} == set(items)
    ctx.db.run(lambda conn: order_store.mark_published(conn, ids[:3]))
    ctx.db.run(lambda conn: order_store.mark_published(conn, []))
    with ctx.db.read() as conn:
        assert pending(conn) == [ids[3]]
        assert [i for i, _, _ in order_store.unpublished(conn, LATER)] == [ids[3]]
        assert order_store.count_unpublished(conn) == 1
        assert outbox_rows(conn) == before  # the outbox keeps every result as it was


def test_a_rolled_back_decision_leaves_nothing_pending(ctx: Context) -> None:
    class Undone(Exception):
        pass

    def enqueue_then_fail(conn: sa.Connection) -> None:
        order_store.enqueue(conn, [("kym/v1/devices/a/results", "t")], NOW)
        raise Undone

    with pytest.raises(Undone):
        ctx.db.run(enqueue_then_fail)
    with ctx.db.read() as conn:
        assert pending(conn) == [] and outbox_rows(conn) == []


def _insert_old_outbox(db: Database) -> None:
    rows = [
        {"id": 1, "topic": "t/a", "jws": "a", "at": NOW, "published": NOW},
        {"id": 2, "topic": "t/b", "jws": "b", "at": NOW, "published": None},
        {"id": 3, "topic": "t/c", "jws": "c", "at": NOW, "published": NOW},
        {"id": 4, "topic": "t/d", "jws": "d", "at": NOW, "published": None},
    ]
    with db.transaction() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO outbox (id, topic, jws, created_at, published_at)"
                " VALUES (:id, :topic, :jws, :at, :published)"
            ),
            rows,
        )


def test_the_migration_keeps_what_was_unpublished_both_ways(
    empty_database_url: str,  # noqa: F811 (the fixture imported above)
) -> None:
    with database_at(empty_database_url, "0022_deliveries_at_index") as db:
        _insert_old_outbox(db)
        db.migrate()
        with db.read() as conn:
            assert pending(conn) == [2, 4]
            columns = {c["name"] for c in sa.inspect(conn).get_columns("outbox")}
            indexes = {i["name"] for i in sa.inspect(conn).get_indexes("outbox")}
            assert [i for i, _, _ in order_store.unpublished(conn, LATER)] == [2, 4]
        assert "published_at" not in columns and "ix_outbox_unpublished" not in indexes
        assert "ix_outbox_subject" in indexes
        db.run(lambda conn: order_store.mark_published(conn, [2]))
        downgrade_to(empty_database_url, "0022_deliveries_at_index")
        with db.read() as conn:
            found = conn.execute(sa.text("SELECT id, published_at FROM outbox ORDER BY id"))
            unpublished = [i for i, published in found if published is None]
            indexes = {i["name"] for i in sa.inspect(conn).get_indexes("outbox")}
            tables = set(sa.inspect(conn).get_table_names())
        assert unpublished == [4]  # 2 was acknowledged after the upgrade
        assert "ix_outbox_unpublished" in indexes and "outbox_pending" not in tables
