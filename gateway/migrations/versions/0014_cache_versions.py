"""One counter that every change to what the order workers cache moves (rules, mandates,
owners' settings, device certificates), by a trigger on each table, so that no writer can
forget it: a worker reads it once per batch and drops its caches when it moved.

Revision ID: 0014_cache_versions
Revises: 0013_instalment_policy
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_cache_versions"
down_revision = "0013_instalment_policy"
branch_labels = None
depends_on = None

CACHED_TABLES = ("device_rules", "mandates", "owners", "device_certificates")
_BUMP = "UPDATE cache_versions SET version = version + 1 WHERE id = 1"


def upgrade() -> None:
    op.create_table(
        "cache_versions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("version", sa.BigInteger, nullable=False),
    )
    op.execute("INSERT INTO cache_versions (id, version) VALUES (1, 0)")
    if op.get_bind().dialect.name == "sqlite":
        for table in CACHED_TABLES:
            for event in ("INSERT", "UPDATE", "DELETE"):
                op.execute(
                    f"CREATE TRIGGER bump_cache_{table}_{event.lower()} AFTER {event} ON {table} "
                    f"BEGIN {_BUMP}; END"
                )
        return
    op.execute(
        "CREATE FUNCTION bump_cache_version() RETURNS trigger LANGUAGE plpgsql AS "
        f"$$ BEGIN {_BUMP}; RETURN NULL; END $$"
    )
    for table in CACHED_TABLES:
        op.execute(
            f"CREATE TRIGGER bump_cache_{table} AFTER INSERT OR UPDATE OR DELETE ON {table} "
            "FOR EACH STATEMENT EXECUTE FUNCTION bump_cache_version()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in CACHED_TABLES:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER bump_cache_{table}_{event}")
    else:
        for table in CACHED_TABLES:
            op.execute(f"DROP TRIGGER bump_cache_{table} ON {table}")
        op.execute("DROP FUNCTION bump_cache_version()")
    op.drop_table("cache_versions")
