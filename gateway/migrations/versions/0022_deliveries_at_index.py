"""The delivery log's old attempts found through an index on their time.

The delivery worker prunes the log every 10 minutes (`events.store.stale_deliveries`: `DELETE
FROM webhook_deliveries WHERE at < ?`). The log's only index was `(webhook_id, seq)`, so each
prune read every attempt of every webhook; the log grows by a row an attempt, up to 9 an event
and webhook, for the 48 hours it keeps them, and the scan ran in a write transaction (on SQLite
holding the database's one write lock, which the order path waits for). With `(at)` the prune
reads only the rows it deletes.

Revision ID: 0022_deliveries_at_index
Revises: 0021_tree_head_anchor
"""

from alembic import op

revision = "0022_deliveries_at_index"
down_revision = "0021_tree_head_anchor"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_webhook_deliveries_at", "webhook_deliveries", ["at"])


def downgrade() -> None:
    op.drop_index("ix_webhook_deliveries_at", table_name="webhook_deliveries")
