"""The `limit.nearly_reached` events of an owner found through an index of their own.

Each batch that takes a device to 80 % of a limit or beyond asks which of these events its owner
already got this period (`gateway.events.thresholds`). The recipient's index led there through
every event the owner received in the 48 hours kept: 6.6 ms on PostgreSQL for an owner with
20,000, paid by every batch of a device near its limit until the limit is reached. A partial
index holds these rare events only (0.03 ms).

Revision ID: 0018_events_nearly_index
Revises: 0017_events_fan_out_partial
"""

import sqlalchemy as sa
from alembic import op

revision = "0018_events_nearly_index"
down_revision = "0017_events_fan_out_partial"
branch_labels = None
depends_on = None

NEARLY = sa.text("type = 'limit.nearly_reached'")


def upgrade() -> None:
    op.create_index(
        "ix_events_nearly",
        "events",
        ["recipient", "created_at"],
        postgresql_where=NEARLY,
        sqlite_where=NEARLY,
    )


def downgrade() -> None:
    op.drop_index("ix_events_nearly", table_name="events")
