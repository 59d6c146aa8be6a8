"""Orders refused as dated ahead of the gateway's clock, remembered until they would be stale by
age (`gateway.orders.early`): the same bytes sent again once their time has come are refused
again, never approved after the device was told the payment failed.

Revision ID: 0020_early_refusals
Revises: 0019_device_keys
"""

import sqlalchemy as sa
from alembic import op

revision = "0020_early_refusals"
down_revision = "0019_device_keys"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "early_refusals",
        sa.Column("device_id", sa.String, primary_key=True),
        sa.Column("order_id", sa.String, primary_key=True),
        sa.Column("payload_sha256", sa.String, primary_key=True),
        sa.Column("expires_ts", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_early_refusals_expires", "early_refusals", ["expires_ts"])


def downgrade() -> None:
    op.drop_index("ix_early_refusals_expires", table_name="early_refusals")
    op.drop_table("early_refusals")
