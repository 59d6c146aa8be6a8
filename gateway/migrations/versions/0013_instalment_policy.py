"""An owner's instalment policy (contract section 8): at most one per owner, naming one of the
owner's credit lines; `counts` and `categories` are JSON lists.

Revision ID: 0013_instalment_policy
Revises: 0012_funding
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_instalment_policy"
down_revision = "0012_funding"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "instalment_policies",
        sa.Column("owner_id", sa.String(64), sa.ForeignKey("owners.id"), primary_key=True),
        sa.Column("source_id", sa.String(64), nullable=False),
        sa.Column("min_amount_minor", sa.BigInteger, nullable=False),
        sa.Column("max_amount_minor", sa.BigInteger, nullable=False),
        sa.Column("counts_json", sa.Text, nullable=False),
        sa.Column("interval_days", sa.Integer, nullable=False),
        sa.Column("keep_at_least_minor", sa.BigInteger, nullable=False),
        sa.Column("categories_json", sa.Text, nullable=True),
        sa.Column("auto_accept_up_to_minor", sa.BigInteger, nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "min_amount_minor <= max_amount_minor", name="ck_instalment_policies_amounts"
        ),
    )


def downgrade() -> None:
    op.drop_table("instalment_policies")
