"""Index entries that every payment wrote and only a few rows need.

- `ix_wallet_payments_due` (status, expires_at) had an entry for every payment, for the sweep
  that looks for holds whose expiry has come. It becomes (expires_at, payment_id) over the
  held payments only (`WHERE status = 'held'`): a pay never enters it, and a hold leaves it
  when it is captured, voided or expires. The sweep's queries say `status = 'held'` as a
  literal, so that the planner may use the partial index (also in PostgreSQL's generic plan).
- `ix_events_created` (created_at), two entries a payment, served only the pruning of old
  events every 10 minutes, which now walks the events' primary key (`seq`) instead.

Per payment on PostgreSQL, three index entries fewer; on SQLite, the pages of these indexes
are no longer written by every batch's commit.

Revision ID: 0024_partial_indexes
Revises: 0023_outbox_pending
"""

import sqlalchemy as sa
from alembic import op

revision = "0024_partial_indexes"
down_revision = "0023_outbox_pending"
branch_labels = None
depends_on = None

HELD = sa.text("status = 'held'")


def upgrade() -> None:
    op.drop_index("ix_wallet_payments_due", table_name="wallet_payments")
    op.create_index(
        "ix_wallet_payments_due",
        "wallet_payments",
        ["expires_at", "payment_id"],
        postgresql_where=HELD,
        sqlite_where=HELD,
    )
    op.drop_index("ix_events_created", table_name="events")


def downgrade() -> None:
    op.create_index("ix_events_created", "events", ["created_at"])
    op.drop_index("ix_wallet_payments_due", table_name="wallet_payments")
    op.create_index("ix_wallet_payments_due", "wallet_payments", ["status", "expires_at"])
