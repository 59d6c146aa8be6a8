"""The Merkle tree of RFC 9162 section 2.1: hashes, appends, inclusion and consistency proofs.

Pure. A node is named by `(level, index)`: the complete subtree of the `2**level` leaves
from `index * 2**level` on (level 0 is a leaf hash). Appending keeps only the tree's frontier,
the roots of the complete subtrees along its right edge, largest first, so an append costs one
leaf hash plus one inner hash per trailing 1-bit of the old size (two hashes on average), and
returns the nodes it completed so that an adapter can store them. Proofs read stored nodes
through `get(level, index)`; `nodes_needed` tells an adapter which ones to fetch in one go.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

EMPTY_ROOT = hashlib.sha256(b"").digest()
Node = tuple[int, int, bytes]  # (level, index, hash)
NodeGetter = Callable[[int, int], bytes]


def leaf_hash(canonical_content: bytes) -> bytes:
    """SHA-256(0x00 || content)."""
    return hashlib.sha256(b"\x00" + canonical_content).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """SHA-256(0x01 || left || right)."""
    return hashlib.sha256(b"\x01" + left + right).digest()


def append(frontier: Sequence[bytes], size: int, leaf: bytes) -> tuple[list[bytes], list[Node]]:
    """Add leaf number `size`: the new frontier and the inner nodes this leaf completed."""
    assert len(frontier) == size.bit_count(), "the frontier does not match the tree size"
    stack, completed = list(frontier), []
    digest, level, index = leaf, 0, size
    while size >> level & 1:
        digest = node_hash(stack.pop(), digest)
        level, index = level + 1, index >> 1
        completed.append((level, index, digest))
    stack.append(digest)
    return stack, completed


def root_of_frontier(frontier: Sequence[bytes]) -> bytes:
    """MTH of the whole tree, from its frontier (the empty tree's root when there is none)."""
    if not frontier:
        return EMPTY_ROOT
    root = frontier[-1]
    for digest in reversed(frontier[:-1]):
        root = node_hash(digest, root)
    return root


def perfect_root(leaves: Sequence[bytes]) -> bytes:
    """MTH of a complete subtree, from its 2**k leaf hashes."""
    assert leaves and len(leaves) & (len(leaves) - 1) == 0
    level = list(leaves)
    while len(level) > 1:
        level = [node_hash(level[i], level[i + 1]) for i in range(0, len(level), 2)]
    return level[0]


def frontier_nodes(size: int) -> list[tuple[int, int]]:
    """The (level, index) of each frontier node of a tree of `size` leaves, largest first."""
    refs, start = [], 0
    for level in reversed(range(size.bit_length())):
        if size >> level & 1:
            refs.append((level, start >> level))
            start += 1 << level
    return refs


def subtree_hash(start: int, end: int, get: NodeGetter) -> bytes:
    """MTH(D[start:end]) for a range that the RFC's recursion produces, from stored nodes."""
    width = end - start
    assert width > 0
    if width & (width - 1) == 0 and start % width == 0:
        return get(width.bit_length() - 1, start // width)
    split = 1 << ((width - 1).bit_length() - 1)  # the largest power of two below width
    return node_hash(subtree_hash(start, start + split, get), subtree_hash(start + split, end, get))


def root_hash(size: int, get: NodeGetter) -> bytes:
    """MTH of the first `size` leaves."""
    return subtree_hash(0, size, get) if size else EMPTY_ROOT


def inclusion_proof(index: int, size: int, get: NodeGetter) -> list[bytes]:
    """PATH(index, D[0:size]) of RFC 9162 section 2.1.3.1, nearest the leaf first."""
    assert 0 <= index < size
    proof: list[bytes] = []
    start, end = 0, size
    while end - start > 1:
        split = 1 << ((end - start - 1).bit_length() - 1)
        if index < start + split:
            proof.append(subtree_hash(start + split, end, get))
            end = start + split
        else:
            proof.append(subtree_hash(start, start + split, get))
            start += split
    proof.reverse()
    return proof


def consistency_proof(first: int, second: int, get: NodeGetter) -> list[bytes]:
    """PROOF(first, D[0:second]) of RFC 9162 section 2.1.4.1 (empty when there is nothing to
    prove: an empty first tree, or equal sizes)."""
    assert 0 <= first <= second
    if first in (0, second):
        return []
    outer: list[bytes] = []
    start, end, rest, whole = 0, second, first, True
    while rest != end - start:
        split = 1 << ((end - start - 1).bit_length() - 1)
        if rest <= split:
            outer.append(subtree_hash(start + split, end, get))
            end = start + split
        else:
            outer.append(subtree_hash(start, start + split, get))
            start, rest, whole = start + split, rest - split, False
    inner = [] if whole else [subtree_hash(start, end, get)]
    return inner + outer[::-1]


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], root: bytes
) -> bool:
    """RFC 9162 section 2.1.3.2: does `proof` show leaf `index` in the tree of `size` leaves?"""
    if not 0 <= index < size:
        return False
    fn, sn, digest = index, size - 1, leaf
    for sibling in proof:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            digest = node_hash(sibling, digest)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            digest = node_hash(digest, sibling)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and digest == root


def verify_consistency(
    first: int, second: int, first_root: bytes, second_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 section 2.1.4.2, plus the two cases with nothing to prove (an empty first tree,
    equal sizes), which need an empty proof."""
    if not 0 <= first <= second:
        return False
    if first == 0:
        return not proof and first_root == EMPTY_ROOT
    if first == second:
        return not proof and first_root == second_root
    if not proof:
        return False
    path = [first_root, *proof] if first & (first - 1) == 0 else list(proof)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr, sr = node_hash(c, fr), node_hash(c, sr)
            while not fn & 1 and fn != 0:
                fn, sn = fn >> 1, sn >> 1
        else:
            sr = node_hash(sr, c)
        fn, sn = fn >> 1, sn >> 1
    return fr == first_root and sr == second_root and sn == 0


def nodes_needed(prove: Callable[[NodeGetter], object]) -> set[tuple[int, int]]:
    """Which stored nodes `prove(get)` reads: which nodes it asks for does not depend on their
    values, so a dry run with placeholders finds them all, for an adapter to fetch at once."""
    wanted: set[tuple[int, int]] = set()

    def record(level: int, index: int) -> bytes:
        wanted.add((level, index))
        return EMPTY_ROOT

    prove(record)
    return wanted
