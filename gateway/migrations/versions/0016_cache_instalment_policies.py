"""Owners' instalment policies join what the order workers cache (`gateway.orders.cache`):
every change to `instalment_policies` moves the `cache_versions` counter, by a trigger like
those of migration 0014, so that a batch of any worker sees a policy put or deleted before it
began.

Revision ID: 0016_cache_instalment_policies
Revises: 0015_instalment_plans
"""

from alembic import op

revision = "0016_cache_instalment_policies"
down_revision = "0015_instalment_plans"
branch_labels = None
depends_on = None

TABLE = "instalment_policies"
_BUMP = "UPDATE cache_versions SET version = version + 1 WHERE id = 1"


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for event in ("INSERT", "UPDATE", "DELETE"):
            op.execute(
                f"CREATE TRIGGER bump_cache_{TABLE}_{event.lower()} AFTER {event} ON {TABLE} "
                f"BEGIN {_BUMP}; END"
            )
        return
    op.execute(  # bump_cache_version() is migration 0014's
        f"CREATE TRIGGER bump_cache_{TABLE} AFTER INSERT OR UPDATE OR DELETE ON {TABLE} "
        "FOR EACH STATEMENT EXECUTE FUNCTION bump_cache_version()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for event in ("insert", "update", "delete"):
            op.execute(f"DROP TRIGGER bump_cache_{TABLE}_{event}")
    else:
        op.execute(f"DROP TRIGGER bump_cache_{TABLE} ON {TABLE}")
