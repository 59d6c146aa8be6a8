"""The audit chain becomes a transparency log (RFC 9162 section 2.1, contract section 9).

`audit_log` rows are keyed by their 0-based leaf index and carry `ts` (Unix seconds), the
top-level `payment_id` and `order_id`, `data` as JCS (RFC 8785) and the leaf hash; the chain's
`prev_hash`/`hash` go. `merkle_nodes` keeps the complete inner subtree hashes from level 4 up
(proofs read them and compute lower ones from leaves; appends add about one per 16 entries);
`tree_heads` keeps every signed tree head; the anchor row `chain_head` ('audit') holds the tree
size, root and frontier. Existing entries are rewritten as leaves in their order (their times
truncated to whole seconds).

Revision ID: 0005
Revises: 0004
"""

import json
import math
from collections.abc import Sequence
from datetime import UTC
from typing import Any

import sqlalchemy as sa
from alembic import op

from gateway.audit import entries, log

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_INDEX = sa.BigInteger().with_variant(sa.Integer, "sqlite")
_OLD = sa.table(
    "audit_log",
    sa.column("seq", sa.BigInteger),
    sa.column("at", sa.DateTime(timezone=True)),
    sa.column("actor", sa.String),
    sa.column("action", sa.String),
    sa.column("device_id", sa.String),
    sa.column("data", sa.Text),
)


def upgrade() -> None:
    conn = op.get_bind()
    old = conn.execute(sa.select(_OLD).order_by(_OLD.c.seq)).mappings().all()
    rows, nodes, frontier = _as_leaves(old)
    op.drop_index("ix_audit_log_device", table_name="audit_log")
    op.drop_table("audit_log")
    new = _create_tables()
    if rows:
        op.bulk_insert(new, rows)
    if nodes:
        op.bulk_insert(sa.table("merkle_nodes", *_node_columns()), nodes)
    with op.batch_alter_table("chain_head") as batch:
        batch.add_column(sa.Column("frontier", sa.Text, nullable=False, server_default=""))
    op.execute(
        sa.text("UPDATE chain_head SET seq = :size, hash = :root, frontier = :frontier "
                "WHERE name = 'audit'").bindparams(
            size=len(rows),
            root=log.root_of_frontier(frontier).hex(),
            frontier="".join(h.hex() for h in frontier),
        )
    )  # fmt: skip


def _create_tables() -> sa.Table:
    new = op.create_table(
        "audit_log",
        sa.Column("leaf_index", _INDEX, primary_key=True, autoincrement=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("actor", sa.String(80), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("device_id", sa.String(64), nullable=True),
        sa.Column("payment_id", sa.String(64), nullable=True),
        sa.Column("order_id", sa.String(64), nullable=True),
        sa.Column("data", sa.Text, nullable=False),
        sa.Column("leaf_hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_log_device", "audit_log", ["device_id", "leaf_index"])
    op.create_index("ix_audit_log_payment", "audit_log", ["payment_id"])
    op.create_index("ix_audit_log_order", "audit_log", ["order_id"])
    op.create_table("merkle_nodes", *_node_columns())
    op.create_table(
        "tree_heads",
        sa.Column("tree_size", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("root_hash", sa.String(64), nullable=False),
        sa.Column("ts", sa.BigInteger, nullable=False),
        sa.Column("jws", sa.Text, nullable=False),
    )
    assert new is not None
    return new


def _node_columns() -> list[sa.Column[Any]]:
    return [
        sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
        sa.Column("node_index", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("hash", sa.String(64), nullable=False),
    ]


def _as_leaves(
    old: Sequence[sa.RowMapping],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[bytes]]:
    rows: list[dict[str, Any]] = []
    nodes: list[dict[str, Any]] = []
    frontier: list[bytes] = []
    for index, row in enumerate(old):
        at = row["at"] if row["at"].tzinfo else row["at"].replace(tzinfo=UTC)
        data = _jsonable(json.loads(row["data"]))
        data = data if isinstance(data, dict) else {"value": data}
        record = entries.record_of((row["actor"], row["action"], row["device_id"], data))
        ts = math.floor(at.timestamp())
        leaf = log.leaf_hash(entries.canonical(entries.content(index, ts, record)))
        frontier, completed = log.append(frontier, index, leaf)
        nodes += [
            {"level": lv, "node_index": i, "hash": h.hex()}
            for lv, i, h in completed
            if lv >= 4  # gateway.audit.store.LOW when this revision was written
        ]
        rows.append(
            {
                "leaf_index": index,
                "ts": ts,
                "actor": record.actor,
                "action": record.action,
                "device_id": record.device_id,
                "payment_id": record.payment_id,
                "order_id": record.order_id,
                "data": entries.canonical(data).decode(),
                "leaf_hash": leaf.hex(),
            }
        )
    return rows, nodes, frontier


def _jsonable(value: Any) -> Any:
    """Old chain data could hold floats; the log's content may not."""
    if isinstance(value, float):
        return int(value) if value.is_integer() else repr(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def downgrade() -> None:
    raise NotImplementedError("the transparency log cannot be turned back into a hash chain")
