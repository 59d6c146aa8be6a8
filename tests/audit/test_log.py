"""The Merkle tree against a reference written from RFC 9162 section 2.1 (the recursive
definitions, computed from all the leaves), for every tree size up to 70 and every pair of
sizes; the production code appends through a frontier and proves from stored nodes."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.audit import log

MAX_SIZE = 70


# --- the reference: RFC 9162 section 2.1, word for word, over the list of entries -----------


def sha256(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def mth(d: list[bytes]) -> bytes:
    """MTH(D[n]) of section 2.1.1."""
    n = len(d)
    if n == 0:
        return sha256(b"")
    if n == 1:
        return sha256(b"\x00" + d[0])
    k = largest_power_of_two_below(n)
    return sha256(b"\x01" + mth(d[:k]) + mth(d[k:]))


def largest_power_of_two_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def path(m: int, d: list[bytes]) -> list[bytes]:
    """PATH(m, D[n]) of section 2.1.3.1."""
    n = len(d)
    if n == 1:
        return []
    k = largest_power_of_two_below(n)
    if m < k:
        return path(m, d[:k]) + [mth(d[k:])]
    return path(m - k, d[k:]) + [mth(d[:k])]


def proof(m: int, d: list[bytes]) -> list[bytes]:
    """PROOF(m, D[n]) of section 2.1.4.1."""
    return subproof(m, d, True)


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = largest_power_of_two_below(n)
    if m <= k:
        return subproof(m, d[:k], b) + [mth(d[k:])]
    return subproof(m - k, d[k:], False) + [mth(d[:k])]


# --- the production code, as the adapter uses it ---------------------------------------------


def entries(n: int) -> list[bytes]:
    return [f"entry {i}".encode() for i in range(n)]


class StoredTree:
    """Leaves appended one by one through the frontier; completed nodes kept as a store would."""

    def __init__(self, data: list[bytes]) -> None:
        self.nodes: dict[tuple[int, int], bytes] = {}
        self.frontier: list[bytes] = []
        self.roots = [log.root_of_frontier([])]
        for size, item in enumerate(data):
            leaf = log.leaf_hash(item)
            self.nodes[(0, size)] = leaf
            self.frontier, completed = log.append(self.frontier, size, leaf)
            self.nodes.update({(level, i): h for level, i, h in completed})
            self.roots.append(log.root_of_frontier(self.frontier))

    def get(self, level: int, index: int) -> bytes:
        return self.nodes[(level, index)]


DATA = entries(MAX_SIZE)
TREE = StoredTree(DATA)


def test_empty_tree_root_is_the_hash_of_nothing() -> None:
    assert log.EMPTY_ROOT.hex() == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert log.root_of_frontier([]) == mth([])


@pytest.mark.parametrize("size", range(0, MAX_SIZE + 1))
def test_roots_from_the_frontier_and_from_stored_nodes_match_the_reference(size: int) -> None:
    expected = mth(DATA[:size])
    assert TREE.roots[size] == expected
    assert log.root_hash(size, TREE.get) == expected


@pytest.mark.parametrize("size", range(1, MAX_SIZE + 1))
def test_inclusion_proofs_match_the_reference_and_verify(size: int) -> None:
    root = mth(DATA[:size])
    for index in range(size):
        made = log.inclusion_proof(index, size, TREE.get)
        assert made == path(index, DATA[:size])
        leaf = log.leaf_hash(DATA[index])
        assert log.verify_inclusion(index, size, leaf, made, root)


@pytest.mark.parametrize("second", range(1, MAX_SIZE + 1))
def test_consistency_proofs_match_the_reference_and_verify_for_every_pair(second: int) -> None:
    second_root = mth(DATA[:second])
    for first in range(1, second + 1):
        made = log.consistency_proof(first, second, TREE.get)
        assert made == (proof(first, DATA[:second]) if first < second else [])
        assert log.verify_consistency(first, second, mth(DATA[:first]), second_root, made)


def test_nothing_to_prove_from_the_empty_tree() -> None:
    assert log.consistency_proof(0, 5, TREE.get) == []
    assert log.verify_consistency(0, 5, log.EMPTY_ROOT, mth(DATA[:5]), [])
    assert not log.verify_consistency(0, 5, mth(DATA[:1]), mth(DATA[:5]), [])
    assert not log.verify_consistency(3, 3, mth(DATA[:3]), mth(DATA[:4]), [])


@pytest.mark.parametrize("size", [1, 2, 3, 7, 8, 13, 64, 70])
def test_a_wrong_leaf_index_root_or_path_fails_inclusion(size: int) -> None:
    root = mth(DATA[:size])
    for index in range(size):
        made = log.inclusion_proof(index, size, TREE.get)
        leaf = log.leaf_hash(DATA[index])
        other = log.leaf_hash(b"forged")
        assert not log.verify_inclusion(index, size, other, made, root)
        assert not log.verify_inclusion(index, size, leaf, made, sha256(b"x"))
        assert not log.verify_inclusion(index, size, leaf, [*made, root], root)
        assert not log.verify_inclusion(size, size, leaf, made, root)
        if made:
            assert not log.verify_inclusion(index, size, leaf, made[:-1], root)
            bent = [sha256(made[0]), *made[1:]]
            assert not log.verify_inclusion(index, size, leaf, bent, root)
        if size > 1:
            assert not log.verify_inclusion((index + 1) % size, size, leaf, made, root)


@pytest.mark.parametrize("second", [2, 3, 5, 8, 9, 31, 70])
def test_a_tampered_consistency_proof_or_root_fails(second: int) -> None:
    for first in range(1, second):
        made = log.consistency_proof(first, second, TREE.get)
        first_root, second_root = mth(DATA[:first]), mth(DATA[:second])
        assert not log.verify_consistency(first, second, first_root, sha256(b"x"), made)
        assert not log.verify_consistency(first, second, sha256(b"x"), second_root, made)
        assert not log.verify_consistency(first, second, first_root, second_root, [])
        assert not log.verify_consistency(first, second, first_root, second_root, made[:-1])
        bent = [sha256(made[-1]), *made[:-1]][::-1]
        assert not log.verify_consistency(first, second, first_root, second_root, bent)
        assert not log.verify_consistency(second, first, second_root, first_root, made)


def test_an_append_costs_one_hash_per_trailing_one_bit() -> None:
    frontier: list[bytes] = []
    for size in range(MAX_SIZE):
        frontier, completed = log.append(frontier, size, log.leaf_hash(DATA[size]))
        trailing_ones = (size ^ (size + 1)).bit_length() - 1
        assert len(completed) == trailing_ones
        assert len(frontier) == (size + 1).bit_count()


def test_nodes_needed_names_exactly_what_a_proof_reads() -> None:
    wanted = log.nodes_needed(lambda get: log.inclusion_proof(5, 13, get))
    read: set[tuple[int, int]] = set()

    def recording(level: int, index: int) -> bytes:
        read.add((level, index))
        return TREE.get(level, index)

    log.inclusion_proof(5, 13, recording)
    assert wanted == read
    assert all(level < 4 for level, _ in wanted)


@given(st.lists(st.binary(max_size=40), min_size=1, max_size=150), st.data())
def test_any_log_proves_any_entry_and_any_earlier_size(
    items: list[bytes], data: st.DataObject
) -> None:
    tree = StoredTree(items)
    size = data.draw(st.integers(1, len(items)), label="size")
    index = data.draw(st.integers(0, size - 1), label="index")
    first = data.draw(st.integers(1, size), label="first")
    root = mth(items[:size])
    assert tree.roots[size] == root
    inclusion = log.inclusion_proof(index, size, tree.get)
    assert inclusion == path(index, items[:size])
    assert log.verify_inclusion(index, size, log.leaf_hash(items[index]), inclusion, root)
    consistency = log.consistency_proof(first, size, tree.get)
    assert log.verify_consistency(first, size, mth(items[:first]), root, consistency)
