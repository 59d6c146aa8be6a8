"""The delivery log's pruning reads only the attempts it deletes, through the index on their
time (migration 0022), on SQLite and PostgreSQL; the migration goes both ways."""

from __future__ import annotations

import sqlalchemy as sa

from gateway.context import Context
from gateway.db import Database
from gateway.events import store as event_store
from tests.audit.test_store import empty_database_url  # noqa: F401 (a fixture)
from tests.events.plans import plan_of
from tests.support.migrations import database_at, downgrade_to

INDEX = "ix_webhook_deliveries_at"


def test_pruning_the_delivery_log_reads_the_index_on_its_time(ctx: Context) -> None:
    """`prune` deletes the attempts older than 48 hours every 10 minutes; without the index it
    read the whole log (every attempt of every webhook) inside a write transaction."""
    with ctx.db.read() as conn:
        plan = plan_of(conn, event_store.stale_deliveries(ctx.clock()), "kym_prune")
    assert INDEX in plan, plan


def indexes_of(db: Database) -> set[str]:
    with db.read() as conn:
        return {i["name"] for i in sa.inspect(conn).get_indexes("webhook_deliveries") if i["name"]}


def test_the_migration_adds_the_index_and_takes_it_away(
    empty_database_url: str,  # noqa: F811 (the fixture imported above)
) -> None:
    with database_at(empty_database_url, "0021_tree_head_anchor") as db:
        assert INDEX not in indexes_of(db)
        db.migrate()
        assert INDEX in indexes_of(db)
        downgrade_to(empty_database_url, "0021_tree_head_anchor")
        assert indexes_of(db) == {"ix_webhook_deliveries_webhook"}
