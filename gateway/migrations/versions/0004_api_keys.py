"""API keys get a public id, a prefix and a last-use time, so that parties can manage them.

Keys from before this revision get an id; their prefix is unknown (only hashes were kept).

Revision ID: 0004
Revises: 0003
"""

import secrets

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("id", sa.String(64), nullable=True))
        batch.add_column(sa.Column("prefix", sa.String(12), nullable=True))
        batch.add_column(sa.Column("last_used_at", _TIME, nullable=True))
    conn = op.get_bind()
    keys = sa.table("api_keys", sa.column("key_hash"), sa.column("id"))
    for (key_hash,) in conn.execute(sa.select(keys.c.key_hash)).all():
        conn.execute(
            keys.update()
            .where(keys.c.key_hash == key_hash)
            .values(id=f"key_{secrets.token_hex(8)}")
        )
    with op.batch_alter_table("api_keys") as batch:
        batch.alter_column("id", existing_type=sa.String(64), nullable=False)
        batch.create_unique_constraint("uq_api_keys_id", ["id"])
        batch.create_index("ix_api_keys_party", ["party_id", "created_at"])


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_index("ix_api_keys_party")
        batch.drop_constraint("uq_api_keys_id", type_="unique")
        batch.drop_column("last_used_at")
        batch.drop_column("prefix")
        batch.drop_column("id")
