"""Signed tree heads become evidence that `kym audit verify` misses when they go.

The log's anchor row (`chain_head`, 'audit') gains `heads`, how many signed tree heads have
been kept, and `head_size`, the largest tree size signed (NULL while none is): `DELETE FROM
tree_heads`, a head cut from the middle or the latest ones rolled back no longer match it.
They start from the heads kept so far (what was deleted before this revision cannot be told).

`tree_heads` is keyed by `(tree_size, ts)` instead of `tree_size` alone, so that a head signed
again for a size already signed (after the signer's certificate was renewed) is kept too:
every head handed out is in the database, and `verify` checks it like the others. The table is
copied, as SQLite cannot change a primary key in place.

Revision ID: 0021_tree_head_anchor
Revises: 0020_early_refusals
"""

import sqlalchemy as sa
from alembic import op

revision = "0021_tree_head_anchor"
down_revision = "0020_early_refusals"
branch_labels = None
depends_on = None

_COPIED = "tree_size, root_hash, ts, jws"


def upgrade() -> None:
    op.create_table(
        "tree_heads_kept",
        sa.Column("tree_size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("ts", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root_hash", sa.String(64), nullable=False),
        sa.Column("jws", sa.Text, nullable=False),
    )
    op.execute(f"INSERT INTO tree_heads_kept ({_COPIED}) SELECT {_COPIED} FROM tree_heads")
    op.drop_table("tree_heads")
    op.rename_table("tree_heads_kept", "tree_heads")
    op.add_column(
        "chain_head", sa.Column("heads", sa.BigInteger, nullable=False, server_default="0")
    )
    op.add_column("chain_head", sa.Column("head_size", sa.BigInteger, nullable=True))
    op.execute(
        "UPDATE chain_head SET heads = (SELECT count(*) FROM tree_heads), "
        "head_size = (SELECT max(tree_size) FROM tree_heads) WHERE name = 'audit'"
    )


def downgrade() -> None:
    with op.batch_alter_table("chain_head") as batch:
        batch.drop_column("head_size")
        batch.drop_column("heads")
    op.create_table(
        "tree_heads_one_a_size",
        sa.Column("tree_size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root_hash", sa.String(64), nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("jws", sa.Text, nullable=False),
    )
    op.execute(  # the first head of each size, as before
        f"INSERT INTO tree_heads_one_a_size ({_COPIED}) SELECT {_COPIED} FROM tree_heads t "
        "WHERE ts = (SELECT min(ts) FROM tree_heads o WHERE o.tree_size = t.tree_size)"
    )
    op.drop_table("tree_heads")
    op.rename_table("tree_heads_one_a_size", "tree_heads")
