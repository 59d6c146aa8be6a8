"""`kym audit verify`: the whole log checked from its rows up, naming the first bad entry.

Every entry is rebuilt from its columns and hashed; the leaves are folded into a fresh tree
(the frontier only, so memory stays small) whose inner nodes are compared with the stored ones
as they complete; each signed tree head's signature, payload and root are checked when the walk
reaches its size; the log's end is checked against the anchor outside the audit table; each
head is proven consistent with the next by the same proofs that the API serves; and the heads
kept are checked against the anchor's count and largest size, so that a head deleted is named.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from sqlalchemy import Connection

from devices import wire
from gateway.audit import entries, heads, log, store
from gateway.audit.heads import TreeHead

Problem = tuple[int, str]  # (the first bad entry's index, why)
NO_ANCHOR = "the log's anchor (its row in chain_head) is missing or unreadable"
NODE_BATCH = 4096


def verify_log(conn: Connection, signer: wire.PublicKey) -> tuple[int, Problem | None]:
    """(number of entries, the first problem found, or None when the log is intact)."""
    signed = list(store.iter_heads(conn))
    problem = _first_bad_signature(signed, signer)
    if problem is not None:
        return 0, problem
    walk = _Walk([head for head, _jws in signed])
    problem = walk.run(store.iter_entries(conn), conn)
    if problem is None:
        problem = _check_end(conn, walk)
    if problem is None:
        problem = _check_consistency(conn, [head for head, _jws in signed])
    if problem is None:
        problem = _check_heads_kept(conn, [head for head, _jws in signed])
    return walk.size, problem


class _Walk:
    """The tree rebuilt from recomputed leaves, checked against stored nodes and signed roots."""

    def __init__(self, signed: Sequence[TreeHead]) -> None:
        self.heads: Iterator[TreeHead] = iter(signed)
        self.next_head = next(self.heads, None)
        self.frontier: list[bytes] = []
        self.size = 0
        self.vouched = 0  # the largest size whose signed root matched
        self.pending: list[log.Node] = []

    def run(self, stream: Iterator[entries.AuditEntry], conn: Connection) -> Problem | None:
        problem = self._check_heads()  # a head of the empty log
        if problem is not None:
            return problem
        for entry in stream:
            why = entries.problem_of(entry, self.size)
            if why is not None:
                return self.size, why
            self.frontier, completed = log.append(
                self.frontier, self.size, bytes.fromhex(entry.leaf_hash)
            )
            self.pending += completed
            self.size += 1
            problem = self._check_heads()
            if problem is None and len(self.pending) >= NODE_BATCH:
                problem = self._check_nodes(conn)
            if problem is not None:
                return problem
        return self._check_nodes(conn)

    def _check_heads(self) -> Problem | None:
        while self.next_head is not None and self.next_head.tree_size == self.size:
            root = log.root_of_frontier(self.frontier).hex()
            if root != self.next_head.root_hash:
                return self.vouched, (
                    f"entries {self.vouched} to {self.size - 1} do not hash to the root "
                    f"of the signed tree head of size {self.size}"
                )
            self.vouched = self.size
            self.next_head = next(self.heads, None)
        return None

    def _check_nodes(self, conn: Connection) -> Problem | None:
        by_level: dict[int, list[tuple[int, bytes]]] = {}
        for level, index, digest in self.pending:
            if level >= store.LOW:  # the lower ones are not stored
                by_level.setdefault(level, []).append((index, digest))
        self.pending = []
        first_bad: Problem | None = None
        for level, nodes in sorted(by_level.items()):
            stored = store.nodes_in_range(conn, level, nodes[0][0], nodes[-1][0])
            for index, digest in nodes:
                if stored.get((level, index)) != digest.hex():
                    start, end = index << level, (index + 1) << level
                    problem = (
                        start,
                        f"entries {start} to {end - 1} do not hash to the stored Merkle "
                        f"node ({level}, {index})",
                    )
                    first_bad = min(first_bad or problem, problem)
                    break
        return first_bad


def _first_bad_signature(
    signed: list[tuple[TreeHead, str]], signer: wire.PublicKey
) -> Problem | None:
    jose = wire.jose_key(signer)
    for head, token in signed:
        try:
            said = heads.verify(token, signer, jose)
        except heads.InvalidTreeHead as exc:
            return _head_problem(head, str(exc))
        if said != head:
            return _head_problem(head, f"its columns {head} differ from what it signed, {said}")
    return None


def _head_problem(head: TreeHead, why: str) -> Problem:
    return max(head.tree_size - 1, 0), f"the signed tree head of size {head.tree_size}: {why}"


def _check_end(conn: Connection, walk: _Walk) -> Problem | None:
    try:
        size, root, frontier = store.log_state(conn)
    except ValueError:  # no row, or a frontier that is not hex
        return walk.size, NO_ANCHOR
    if walk.size != size:
        return min(walk.size, size), (
            f"the log ends after {walk.size} entries but its anchor says {size}"
        )
    if log.root_of_frontier(walk.frontier).hex() != root:
        return walk.vouched, f"entries from {walk.vouched} on do not hash to the anchor's root"
    if frontier != walk.frontier:
        return size, "the stored frontier does not match the entries"
    if walk.next_head is not None:
        return size, (
            f"the signed tree head of size {walk.next_head.tree_size} covers more entries "
            f"than the log holds ({size})"
        )
    expected = sum(size >> level for level in range(store.LOW, size.bit_length()))
    if store.count_nodes(conn) != expected:
        return size, f"the Merkle node table holds other nodes than the {expected} of the tree"
    return None


def _check_consistency(conn: Connection, signed: list[TreeHead]) -> Problem | None:
    for older, newer in zip(signed, signed[1:], strict=False):
        proof = store.consistency_proof(conn, older.tree_size, newer.tree_size)
        if not log.verify_consistency(
            older.tree_size,
            newer.tree_size,
            bytes.fromhex(older.root_hash),
            bytes.fromhex(newer.root_hash),
            proof,
        ):
            return older.tree_size, (
                f"the signed tree heads of sizes {older.tree_size} and {newer.tree_size} "
                "are not consistent"
            )
    return None


def _check_heads_kept(conn: Connection, signed: list[TreeHead]) -> Problem | None:
    """Signed heads are evidence, so their loss is damage: the anchor counts the heads kept and
    holds the largest size signed, and any head deleted (all, the latest, one between others)
    leaves them unmatched. The first entry named is the first no longer vouched for by a head
    (0 when a head between others went: which one cannot be told)."""
    try:
        count, largest = store.heads_anchor(conn)
    except (ValueError, TypeError):
        return 0, NO_ANCHOR
    kept, last = len(signed), (signed[-1].tree_size if signed else None)
    if (kept, last) == (count, largest):
        return None
    holds = f"it holds {kept}, the latest of size {last}" if signed else "it holds none"
    upto = f" up to size {largest}" if largest is not None else ""
    counted = f"the log's anchor counts {count} signed tree heads{upto}; {holds}"
    if kept > count or (last or 0) > (largest or 0):
        return 0, f"tree_heads holds signed tree heads that the anchor does not ({counted})"
    if last != largest:
        why = f"the latest signed tree head, of size {largest}, is missing from tree_heads"
        return last or 0, f"{why} ({counted})"
    heads_are = "signed tree head is" if count - kept == 1 else "signed tree heads are"
    return 0, f"{count - kept} {heads_are} missing from tree_heads ({counted})"
