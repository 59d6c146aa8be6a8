"""Index entries every payment wrote and few rows need (migration 0024): the expiry sweep finds
held payments through a partial index of them, and old events are pruned through the events'
primary key, on SQLite and PostgreSQL (the plans say so); the migration goes both ways."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from gateway.context import Context
from gateway.db import Database
from gateway.events import store as event_store
from gateway.events.envelope import Draft
from tests.audit.test_store import empty_database_url  # noqa: F401 (a fixture)
from tests.events.plans import plan_of
from tests.support.migrations import database_at, downgrade_to
from wallet import adjustments
from wallet.schema import payments

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def test_the_expiry_sweep_reads_only_the_held_payments_index(ctx: Context) -> None:
    due = adjustments._DUE.params(p_now=T0, p_limit=100)
    any_due = sa.select(payments.c.payment_id).where(
        payments.c.status == adjustments.IS_HELD, payments.c.expires_at <= T0
    )
    with ctx.db.read() as conn:
        for name, statement in (("kym_due", due), ("kym_any_due", any_due)):
            plan = plan_of(conn, statement, name)
            assert "ix_wallet_payments_due" in plan, plan


def test_pruning_reads_the_events_by_position(ctx: Context) -> None:
    with ctx.db.read() as conn:
        plan = plan_of(conn, event_store.stale_events(10, T0), "kym_prune_events")
    assert "PRIMARY KEY" in plan or "events_pkey" in plan, plan
    assert "ix_events" not in plan, plan


def _record(ctx: Context, at: datetime, *kinds: str) -> None:
    drafts = [Draft("own_a", kind, {"n": n}) for n, kind in enumerate(kinds)]
    ctx.db.run(lambda conn: event_store.record(conn, drafts, at))


def _kept(ctx: Context) -> list[tuple[str, datetime]]:
    with ctx.db.read() as conn:
        rows = conn.execute(sa.select(event_store.events).order_by(event_store.events.c.seq))
        return [(row.type, row.created_at) for row in rows]


def test_pruning_forgets_the_old_events_and_keeps_the_rest(ctx: Context) -> None:
    with ctx.db.read() as conn:
        assert event_store.seq_before(conn, T0) is None  # no events at all
    for day in range(10):
        _record(ctx, T0 + timedelta(days=day), "payment.approved", "payment.declined")
    _record(ctx, T0 + timedelta(days=2), "limit.nearly_reached")  # kept for a year
    _record(ctx, T0 + timedelta(days=3))  # nothing
    cut = T0 + timedelta(days=5)
    with ctx.db.read() as conn:
        assert event_store.seq_before(conn, T0) is None  # none that old
    pruned = ctx.db.run(lambda conn: event_store.prune(conn, cut))
    assert pruned == 10
    kept = _kept(ctx)
    assert ("limit.nearly_reached", T0 + timedelta(days=2)) in kept
    assert sorted(at for kind, at in kept if kind != "limit.nearly_reached") == sorted(
        T0 + timedelta(days=day) for day in range(5, 10) for _ in range(2)
    )
    assert ctx.db.run(lambda conn: event_store.prune(conn, cut)) == 0  # again: nothing more
    later = T0 + timedelta(days=400)
    assert ctx.db.run(lambda conn: event_store.prune(conn, later)) == 11  # the year is over
    assert _kept(ctx) == []


def test_an_old_event_committed_after_a_newer_one_goes_at_a_later_pruning(ctx: Context) -> None:
    """Two gateways' transactions can commit out of their times' order: the pruning never
    forgets an event newer than its cut, and an old one it passed over goes at a later one."""
    days = [0, 9, 1, 9, 9, 9, 9]  # the third was made before the second, committed after it
    for day in days:
        _record(ctx, T0 + timedelta(days=day), "payment.approved")
    cut = T0 + timedelta(days=5)
    assert ctx.db.run(lambda conn: event_store.prune(conn, cut)) == 1
    assert [at for _, at in _kept(ctx)] == [T0 + timedelta(days=day) for day in days[1:]]
    later = T0 + timedelta(days=10)
    assert ctx.db.run(lambda conn: event_store.prune(conn, later)) == 6
    assert _kept(ctx) == []


def indexes_of(db: Database, table: str) -> dict[str, list[str]]:
    with db.read() as conn:
        found = sa.inspect(conn).get_indexes(table)
    return {str(i["name"]): [str(c) for c in i["column_names"]] for i in found}


def test_the_migration_changes_the_indexes_and_takes_it_back(
    empty_database_url: str,  # noqa: F811 (the fixture imported above)
) -> None:
    with database_at(empty_database_url, "0023_outbox_pending") as db:
        assert indexes_of(db, "wallet_payments")["ix_wallet_payments_due"] == [
            "status",
            "expires_at",
        ]
        assert "ix_events_created" in indexes_of(db, "events")
        db.migrate()
        assert indexes_of(db, "wallet_payments")["ix_wallet_payments_due"] == [
            "expires_at",
            "payment_id",
        ]
        assert "ix_events_created" not in indexes_of(db, "events")
        downgrade_to(empty_database_url, "0023_outbox_pending")
        assert indexes_of(db, "wallet_payments")["ix_wallet_payments_due"] == [
            "status",
            "expires_at",
        ]
        assert indexes_of(db, "events")["ix_events_created"] == ["created_at"]
