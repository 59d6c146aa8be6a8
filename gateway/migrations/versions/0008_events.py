"""Events for owners and merchants (contract section 7): the events outbox, webhooks, the
attempts still due, and the delivery log.

`events` is written in the transaction of the change that causes it (one multi-row insert per
decision batch); `fanned_out` is false until the delivery worker has made a `webhook_tasks` row
for every matching webhook. `seq` orders events for the stream's `Last-Event-ID` resume.

Revision ID: 0008_events
Revises: 0007_owner_lists
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_events"
down_revision = "0007_owner_lists"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)
_SEQ = sa.BigInteger().with_variant(sa.Integer, "sqlite")


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(64), nullable=False, unique=True),
        sa.Column("recipient", sa.String(64), nullable=False),  # an owner's or merchant's id
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("data_json", sa.Text, nullable=False),
        sa.Column("fanned_out", sa.Boolean, nullable=False),
    )
    op.create_index("ix_events_recipient", "events", ["recipient", "seq"])
    op.create_index("ix_events_fan_out", "events", ["fanned_out", "seq"])
    op.create_index("ix_events_created", "events", ["created_at"])
    op.create_table(
        "webhooks",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("party_kind", sa.String(16), nullable=False),
        sa.Column("party_id", sa.String(64), nullable=False),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("events_json", sa.Text, nullable=False),
        sa.Column("secret", sa.String(100), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
    )
    op.create_index("ix_webhooks_party", "webhooks", ["party_id", "created_at"])
    op.create_table(
        "webhook_tasks",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("webhook_id", sa.String(64), nullable=False),
        sa.Column("event_seq", _SEQ, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_at", _TIME, nullable=False),
        sa.Column("first_at", _TIME, nullable=True),
    )
    op.create_index("ix_webhook_tasks_due", "webhook_tasks", ["next_at"])
    op.create_index("ix_webhook_tasks_webhook", "webhook_tasks", ["webhook_id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
        sa.Column("webhook_id", sa.String(64), nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("status_code", sa.Integer, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("at", _TIME, nullable=False),
        sa.Column("delivered", sa.Boolean, nullable=False),
    )
    op.create_index("ix_webhook_deliveries_webhook", "webhook_deliveries", ["webhook_id", "seq"])


def downgrade() -> None:
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_tasks")
    op.drop_table("webhooks")
    op.drop_table("events")
