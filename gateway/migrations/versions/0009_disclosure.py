"""Disclosure (contract section 9): a merchant's and an integrator's legal name and support
contacts. Rows from before this revision keep their `name` as the legal name and no contacts.

Revision ID: 0009_disclosure
Revises: 0008_events
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_disclosure"
down_revision = "0008_events"
branch_labels = None
depends_on = None

_TABLES = ("merchants", "integrators")


def upgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("legal_name", sa.String(200), nullable=True))
            batch.add_column(sa.Column("support_email", sa.String(1000), nullable=True))
            batch.add_column(sa.Column("support_url", sa.String(1000), nullable=True))
        op.execute(f"UPDATE {table} SET legal_name = name WHERE legal_name IS NULL")


def downgrade() -> None:
    for table in _TABLES:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("support_url")
            batch.drop_column("support_email")
            batch.drop_column("legal_name")
