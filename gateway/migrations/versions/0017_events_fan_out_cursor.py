"""Webhook fan-out by a cursor instead of a flag on every event.

Until now every event row was written with `fanned_out` false, indexed on it, and updated to
true by the delivery worker a moment later: per payment (two events) four index entries and
two row versions more than the event itself, on the order path's busiest table. The fan-out
now remembers the last event it handled (`events_fan_out.seq`) and reads the events after it
that are certainly committed (`gateway.events.store.fan_out`). The events the flag still
shows as waiting are where the cursor starts.

Revision ID: 0017_events_fan_out_cursor
Revises: 0016_cache_instalment_policies
"""

import sqlalchemy as sa
from alembic import op

revision = "0017_events_fan_out_cursor"
down_revision = "0016_cache_instalment_policies"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "events_fan_out",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("seq", sa.BigInteger, nullable=False),  # the last event fanned out
    )
    op.execute(
        "INSERT INTO events_fan_out (id, seq) SELECT 1, COALESCE("
        "(SELECT MIN(seq) - 1 FROM events WHERE NOT fanned_out), "
        "(SELECT MAX(seq) FROM events), 0)"
    )
    op.drop_index("ix_events_fan_out", table_name="events")
    op.drop_column("events", "fanned_out")


def downgrade() -> None:
    op.add_column(
        "events", sa.Column("fanned_out", sa.Boolean, nullable=False, server_default=sa.true())
    )
    op.execute(
        "UPDATE events SET fanned_out = "
        + ("0" if op.get_bind().dialect.name == "sqlite" else "false")
        + " WHERE seq > (SELECT seq FROM events_fan_out WHERE id = 1)"
    )
    op.create_index("ix_events_fan_out", "events", ["fanned_out", "seq"])
    op.drop_table("events_fan_out")
