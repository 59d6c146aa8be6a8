"""The fan-out's index holds only the events still to fan out.

Since events whose recipient has no webhook are written fanned out (most of them), an index
over every event's flag grew by an entry an event that no query reads; the partial index keeps
only those the delivery worker still has to fan out, one B-tree less that each batch's events
are written to.

Revision ID: 0017_events_fan_out_partial
Revises: 0016_cache_instalment_policies
"""

import sqlalchemy as sa
from alembic import op

revision = "0017_events_fan_out_partial"
down_revision = "0016_cache_instalment_policies"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_events_fan_out", table_name="events")
    op.create_index(
        "ix_events_to_fan_out",
        "events",
        ["seq"],
        postgresql_where=sa.text("fanned_out = false"),
        sqlite_where=sa.text("fanned_out = 0"),
    )


def downgrade() -> None:
    op.drop_index("ix_events_to_fan_out", table_name="events")
    op.create_index("ix_events_fan_out", "events", ["fanned_out", "seq"])
