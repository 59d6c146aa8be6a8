"""The owner's side (contract section 7): the freeze switch, why an approval waits, and indexes
for the paged lists (newest first by creation time, then id).

Approvals from before this revision have no `why`; the lists then say it from the device's
rules as they are now.

Revision ID: 0007_owner_lists
Revises: 0006_console
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_owner_lists"
down_revision = "0006_console"
branch_labels = None
depends_on = None

_INDEXES = {
    "ix_devices_owner_created": ("devices", ["owner_id", "created_at", "id"]),
    "ix_devices_integrator_created": ("devices", ["integrator_id", "created_at", "id"]),
    "ix_approvals_device_created": ("approvals", ["device_id", "created_at", "id"]),
    "ix_mandates_device_created": ("mandates", ["device_id", "created_at", "id"]),
}


def upgrade() -> None:
    with op.batch_alter_table("owners") as batch:
        batch.add_column(sa.Column("frozen", sa.Boolean, nullable=False, server_default=sa.false()))
    with op.batch_alter_table("approvals") as batch:
        batch.add_column(sa.Column("why", sa.String(32), nullable=True))
    for name, (table, columns) in _INDEXES.items():
        op.create_index(name, table, columns)


def downgrade() -> None:
    for name, (table, _columns) in _INDEXES.items():
        op.drop_index(name, table_name=table)
    with op.batch_alter_table("approvals") as batch:
        batch.drop_column("why")
    with op.batch_alter_table("owners") as batch:
        batch.drop_column("frozen")
