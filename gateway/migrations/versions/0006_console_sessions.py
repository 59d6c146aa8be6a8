"""Console sessions (contract section 7): a random session id's hash, the API key that opened it.

The cookie holds only the random id; the row keeps its SHA-256, the owner, the session's CSRF
token and its expiry. A row whose purpose is "link" is a one-time sign-in link (`kym demo`
prints one): using it replaces it with a session. `key_id` references the API key with ON
DELETE CASCADE, so deleting that key ends the session in every worker (lookups also join the
key, for databases that do not enforce the reference).

Revision ID: 0006_console
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_console"
down_revision = "0005"
branch_labels = None
depends_on = None

_TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "console_sessions",
        sa.Column("id_hash", sa.String(64), primary_key=True),
        sa.Column(
            "key_id",
            sa.String(64),
            sa.ForeignKey("api_keys.id", ondelete="CASCADE", name="fk_console_sessions_key"),
            nullable=False,
        ),
        sa.Column("owner_id", sa.String(64), nullable=False),
        sa.Column("purpose", sa.String(16), nullable=False),  # "session", or "link" (one use)
        sa.Column("csrf_token", sa.String(64), nullable=False),
        sa.Column("created_at", _TIME, nullable=False),
        sa.Column("expires_at", _TIME, nullable=False),
    )
    op.create_index("ix_console_sessions_key", "console_sessions", ["key_id"])


def downgrade() -> None:
    op.drop_index("ix_console_sessions_key", "console_sessions")
    op.drop_table("console_sessions")
