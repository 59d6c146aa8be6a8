"""SQL adapter for the transparency log: entries, stored Merkle nodes, the log's state row and
the signed tree heads. Functions never commit.

Appends are serialised by a row lock on the log's state row (`chain_head`, name 'audit'), taken
in the caller's transaction, so indexes are dense and in commit order across every gateway
process (SQLite serialises writers with `BEGIN IMMEDIATE` anyway). That row also holds the
tree's size, root and frontier: the anchor, kept outside the audit table, that a truncated
log no longer matches.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import Connection

from gateway.audit import entries, log
from gateway.audit.entries import AuditEntry, LegacyItem, Record
from gateway.audit.heads import TreeHead
from wallet.prepared import Prepared, insert_many, pipelined

T = TypeVar("T")
# Inner nodes are stored from this level up (about one row per 16 entries); a proof computes the
# few lower ones it needs from at most 2**LOW - 1 leaf hashes each, which keeps appends cheap.
LOW = 4
metadata = sa.MetaData()
audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("leaf_index", sa.BigInteger, primary_key=True),
    sa.Column("ts", sa.BigInteger),
    sa.Column("actor", sa.String),
    sa.Column("action", sa.String),
    sa.Column("device_id", sa.String),
    sa.Column("payment_id", sa.String),
    sa.Column("order_id", sa.String),
    sa.Column("data", sa.Text),
    sa.Column("leaf_hash", sa.String),
)
merkle_nodes = sa.Table(
    "merkle_nodes",
    metadata,
    sa.Column("level", sa.SmallInteger, primary_key=True),
    sa.Column("node_index", sa.BigInteger, primary_key=True),
    sa.Column("hash", sa.String),
)
chain_head = sa.Table(
    "chain_head",
    metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("seq", sa.BigInteger),  # the tree size
    sa.Column("hash", sa.String),  # the root hash, lowercase hex
    sa.Column("frontier", sa.Text),  # the frontier's hashes, largest subtree first, hex
    sa.Column("heads", sa.BigInteger),  # how many signed tree heads were kept
    sa.Column("head_size", sa.BigInteger),  # the largest tree size signed, NULL while none is
)
tree_heads = sa.Table(
    "tree_heads",
    metadata,
    sa.Column("tree_size", sa.BigInteger, primary_key=True),
    sa.Column("ts", sa.BigInteger, primary_key=True),  # a size may be signed again, later
    sa.Column("root_hash", sa.String),
    sa.Column("jws", sa.Text),
)
_STATE = chain_head.c.name == "audit"
# Compiled once and run on the DBAPI cursor: every order batch runs them, and Core's work per
# statement costs more than running it on SQLite.
_NAMED = chain_head.c.name == sa.bindparam("state_name")
_READ = sa.select(chain_head.c.seq, chain_head.c.hash, chain_head.c.frontier).where(_NAMED)
_READ_STATE = Prepared({"*": _READ})
_LOCK_STATE = Prepared({"*": _READ.with_for_update()})
_SET_STATE = Prepared(
    {
        "*": chain_head.update()
        .where(_NAMED)
        .values(
            seq=sa.bindparam("new_seq"),
            hash=sa.bindparam("new_hash"),
            frontier=sa.bindparam("new_frontier"),
        )
    }
)


def unix_seconds(at: datetime | int) -> int:
    """Whole Unix seconds (naive datetimes are UTC, as SQLite hands them back)."""
    if isinstance(at, int):
        return at
    return math.floor((at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp())


def append(
    conn: Connection, at: datetime | int, items: Iterable[Record | LegacyItem]
) -> list[AuditEntry]:
    """Append entries in this transaction (locking the log's state row until it ends)."""
    records = [entries.record_of(item) for item in items]
    if not records:
        return []
    state = lock_state_later(conn)
    with pipelined(conn):  # three writes, one round trip on PostgreSQL
        return append_to(conn, at, records, state())


State = tuple[int, str, list[bytes]]  # the tree's size, root hash hex and frontier


def lock_state_later(conn: Connection) -> Callable[[], State]:
    """Lock the log's state row until the transaction ends; its state, read later (inside
    `wallet.prepared.pipelined`, once the block has ended)."""
    rows = _LOCK_STATE.later(conn, {"state_name": "audit"})
    return lambda: _state_of(rows())


def append_to(
    conn: Connection, at: datetime | int, items: Iterable[Record | LegacyItem], state: State
) -> list[AuditEntry]:
    """Write the entries after `state` (read by `lock_state_later` in this transaction): the
    entries, the Merkle nodes they complete and the new state, three statements."""
    records = [entries.record_of(item) for item in items]
    if not records:
        return []
    ts = unix_seconds(at)
    size, _root, frontier = state
    rows, nodes = [], []
    for record in records:
        data, canonical = entries.encode(size, ts, record)
        leaf = log.leaf_hash(canonical)
        frontier, completed = log.append(frontier, size, leaf)
        nodes += completed  # ~1 per entry, of which ~1 in 8 is kept
        rows.append(
            AuditEntry(
                size, ts, record.actor, record.action, record.device_id, record.payment_id,
                record.order_id, data, leaf.hex(),
            )
        )  # fmt: skip
        size += 1
    kept = [{"level": lv, "node_index": i, "hash": h.hex()} for lv, i, h in nodes if lv >= LOW]
    root, text = log.root_of_frontier(frontier).hex(), "".join(h.hex() for h in frontier)
    state_row = {"state_name": "audit", "new_seq": size, "new_hash": root, "new_frontier": text}
    insert_many(conn, audit_log, [_row_of(entry) for entry in rows])
    insert_many(conn, merkle_nodes, kept)
    _SET_STATE.rows(conn, state_row)
    return rows


def log_state(conn: Connection, *, lock: bool = False) -> State:
    """(tree size, root hash hex, frontier) from the log's state row."""
    return _state_of((_LOCK_STATE if lock else _READ_STATE).rows(conn, {"state_name": "audit"}))


def _state_of(rows: list[Any]) -> State:
    [(seq, root, text)] = rows
    text = text or ""
    frontier = [bytes.fromhex(text[i : i + 64]) for i in range(0, len(text), 64)]
    return int(seq), str(root), frontier


def iter_entries(
    conn: Connection,
    *,
    device_id: str | None = None,
    payment_id: str | None = None,
    order_id: str | None = None,
    start: int = 0,
    chunk: int = 5000,
) -> Iterator[AuditEntry]:
    """Entries in log order from index `start`, all of them or those naming a device, a payment
    or an order (every filter given must hold), read in chunks (keyset paging, so that other
    queries may run in between)."""
    while True:
        query = (
            audit_log.select()
            .where(audit_log.c.leaf_index >= start)
            .order_by(audit_log.c.leaf_index)
            .limit(chunk)
        )
        if device_id is not None:
            query = query.where(audit_log.c.device_id == device_id)
        if payment_id is not None:
            query = query.where(audit_log.c.payment_id == payment_id)
        if order_id is not None:
            query = query.where(audit_log.c.order_id == order_id)
        batch = [_entry_of(row) for row in conn.execute(query).mappings()]
        yield from batch
        if len(batch) < chunk:
            return
        start = batch[-1].index + 1


def newest_entries(
    conn: Connection, device_id: str, limit: int, before_index: int | None = None
) -> list[AuditEntry]:
    """Up to `limit` entries naming a device, newest first, below `before_index` if given."""
    query = (
        audit_log.select()
        .where(audit_log.c.device_id == device_id)
        .order_by(audit_log.c.leaf_index.desc())
        .limit(limit)
    )
    if before_index is not None:
        query = query.where(audit_log.c.leaf_index < before_index)
    return [_entry_of(row) for row in conn.execute(query).mappings()]


def entries_at(conn: Connection, indexes: Iterable[int]) -> list[AuditEntry]:
    """The entries with these indexes, in log order."""
    query = audit_log.select().where(audit_log.c.leaf_index.in_(sorted(set(indexes))))
    return [
        _entry_of(row) for row in conn.execute(query.order_by(audit_log.c.leaf_index)).mappings()
    ]


def stored_nodes(conn: Connection, refs: Iterable[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
    """The hashes of these (level, index) nodes: leaf hashes and stored nodes as stored, the
    levels below LOW computed from their leaves; a node that is not there is absent."""
    refs = set(refs)
    low = [(level, i) for level, i in refs if level < LOW]
    leaves = _leaf_hashes(
        conn, {j for level, i in low for j in range(i << level, (i + 1) << level)}
    )
    found: dict[tuple[int, int], bytes] = {}
    for level, i in low:
        below = [leaves.get(j) for j in range(i << level, (i + 1) << level)]
        if all(leaf is not None for leaf in below):
            found[(level, i)] = log.perfect_root([leaf for leaf in below if leaf is not None])
    by_level: dict[int, list[int]] = {}
    for level, index in refs:
        if level >= LOW:
            by_level.setdefault(level, []).append(index)
    if by_level:  # one query, one index lookup per level (a row-value IN scans the table)
        wanted = sa.or_(
            *(
                sa.and_(merkle_nodes.c.level == level, merkle_nodes.c.node_index.in_(indexes))
                for level, indexes in by_level.items()
            )
        )
        nodes = sa.select(merkle_nodes.c.level, merkle_nodes.c.node_index, merkle_nodes.c.hash)
        for row in conn.execute(nodes.where(wanted)):
            found[(int(row.level), int(row.node_index))] = bytes.fromhex(row.hash)
    return found


def _leaf_hashes(conn: Connection, indexes: set[int]) -> dict[int, bytes]:
    wanted, found = sorted(indexes), {}
    for start in range(0, len(wanted), 500):
        query = sa.select(audit_log.c.leaf_index, audit_log.c.leaf_hash).where(
            audit_log.c.leaf_index.in_(wanted[start : start + 500])
        )
        found.update({int(i): bytes.fromhex(h) for i, h in conn.execute(query)})
    return found


def nodes_in_range(
    conn: Connection, level: int, first: int, last: int
) -> dict[tuple[int, int], str]:
    """Stored inner nodes of one level with indexes first..last, as hex."""
    query = sa.select(merkle_nodes.c.node_index, merkle_nodes.c.hash).where(
        merkle_nodes.c.level == level, merkle_nodes.c.node_index.between(first, last)
    )
    return {(level, i): h for i, h in conn.execute(query)}


def count_nodes(conn: Connection) -> int:
    """How many inner nodes are stored."""
    return int(conn.execute(sa.select(sa.func.count()).select_from(merkle_nodes)).scalar_one())


def with_stored_nodes(conn: Connection, prove: Callable[[log.NodeGetter], T]) -> T:
    """Run a proof computation over stored nodes, fetched in one round."""
    found = stored_nodes(conn, log.nodes_needed(prove))

    def get(level: int, index: int) -> bytes:
        if (level, index) not in found:
            raise LookupError(f"Merkle node ({level}, {index}) is not stored")
        return found[(level, index)]

    return prove(get)


def inclusion_proof(conn: Connection, index: int, tree_size: int) -> list[bytes]:
    """Entry `index`'s inclusion proof in the tree of `tree_size` entries."""
    return with_stored_nodes(conn, lambda get: log.inclusion_proof(index, tree_size, get))


def consistency_proof(conn: Connection, first: int, second: int) -> list[bytes]:
    """The consistency proof between the trees of `first` and `second` entries."""
    return with_stored_nodes(conn, lambda get: log.consistency_proof(first, second, get))


def root_at(conn: Connection, tree_size: int) -> bytes:
    """The root hash of the first `tree_size` entries, from stored nodes."""
    return with_stored_nodes(conn, lambda get: log.root_hash(tree_size, get))


def insert_head(conn: Connection, head: TreeHead, jws: str) -> None:
    """Keep a signed tree head (the history is kept: heads are never replaced), counted in the
    log's state row, which the caller has locked (`log_state(lock=True)`): a head deleted
    later no longer matches the count, nor the latest the largest size signed."""
    conn.execute(tree_heads.insert().values(jws=jws, **head.payload()))
    largest = sa.case(
        (chain_head.c.head_size >= head.tree_size, chain_head.c.head_size), else_=head.tree_size
    )
    conn.execute(
        chain_head.update().where(_STATE).values(heads=chain_head.c.heads + 1, head_size=largest)
    )


def heads_anchor(conn: Connection) -> tuple[int, int | None]:
    """(how many signed heads were kept, the largest size signed or None) from the state row;
    ValueError when the row is missing."""
    query = sa.select(chain_head.c.heads, chain_head.c.head_size).where(_STATE)
    [(count, size)] = conn.execute(query).all()
    return int(count), None if size is None else int(size)


_NEWEST = (tree_heads.c.tree_size.desc(), tree_heads.c.ts.desc())


def latest_head(conn: Connection) -> tuple[TreeHead, str] | None:
    """The signed head with the largest tree (the latest signed of that size), and its JWS."""
    row = conn.execute(tree_heads.select().order_by(*_NEWEST).limit(1)).mappings().first()
    return (_head_of(row), str(row["jws"])) if row else None


def head_of_size(conn: Connection, tree_size: int) -> tuple[TreeHead, str] | None:
    """The latest signed head of exactly this size, if one was signed."""
    query = tree_heads.select().where(tree_heads.c.tree_size == tree_size).order_by(*_NEWEST)
    row = conn.execute(query.limit(1)).mappings().first()
    return (_head_of(row), str(row["jws"])) if row else None


def iter_heads(conn: Connection) -> Iterator[tuple[TreeHead, str]]:
    """Every signed head, smallest tree first (one size's in the order they were signed)."""
    query = tree_heads.select().order_by(tree_heads.c.tree_size, tree_heads.c.ts)
    for row in conn.execute(query).mappings():
        yield _head_of(row), str(row["jws"])


def _head_of(row: sa.RowMapping) -> TreeHead:
    return TreeHead(int(row["tree_size"]), str(row["root_hash"]), int(row["ts"]))


def _row_of(entry: AuditEntry) -> dict[str, object]:
    return {
        "leaf_index": entry.index,
        "ts": entry.ts,
        "actor": entry.actor,
        "action": entry.action,
        "device_id": entry.device_id,
        "payment_id": entry.payment_id,
        "order_id": entry.order_id,
        "data": entry.data,
        "leaf_hash": entry.leaf_hash,
    }


def _entry_of(row: sa.RowMapping) -> AuditEntry:
    return AuditEntry(
        index=row["leaf_index"],
        ts=row["ts"],
        actor=row["actor"],
        action=row["action"],
        device_id=row["device_id"],
        payment_id=row["payment_id"],
        order_id=row["order_id"],
        data=row["data"],
        leaf_hash=row["leaf_hash"],
    )
