"""Evidence bundles (contract section 9): what a bundle needs that was not kept before.

- `orders.jws`: the order exactly as it was received and decided (null for orders from before
  this revision, and for merchants' HTTP calls, which are not signed);
- `outbox.subject`: the payment a published result or event names, or `<device>/<order>` for
  one that names no payment, indexed, so that a bundle finds every result about a payment;
- `payment_scopes.consent_json` and `rules_salt`: the consent the gateway recorded when it
  decided the payment (its JCS payload, also in the decision's audit entry) and the salt of its
  `rules_sha256`, which only the payer's owner and the admin see.

Revision ID: 0010_evidence
Revises: 0009_disclosure
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_evidence"
down_revision = "0009_disclosure"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("orders") as batch:
        batch.add_column(sa.Column("jws", sa.Text, nullable=True))
    with op.batch_alter_table("outbox") as batch:
        batch.add_column(sa.Column("subject", sa.String(140), nullable=True))
    op.create_index("ix_outbox_subject", "outbox", ["subject"])
    with op.batch_alter_table("payment_scopes") as batch:
        batch.add_column(sa.Column("consent_json", sa.Text, nullable=True))
        batch.add_column(sa.Column("rules_salt", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("payment_scopes") as batch:
        batch.drop_column("rules_salt")
        batch.drop_column("consent_json")
    op.drop_index("ix_outbox_subject", table_name="outbox")
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("subject")
    with op.batch_alter_table("orders") as batch:
        batch.drop_column("jws")
