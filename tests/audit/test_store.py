"""The log on real databases (SQLite and PostgreSQL): leaf hashes as the contract defines them,
dense indexes under concurrent appends, signed heads, the HTTP routes, and the migration of a
hash chain into the log."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric import ec
from joserfc import jws
from joserfc.jwk import ECKey
from sqlalchemy import text

from devices import wire
from gateway.audit import entries, heads, log, store
from gateway.audit import service as audit_service
from gateway.audit.entries import InvalidContent, Record
from gateway.db import Database
from gateway.errors import Invalid, NotFound
from tests.support.migrations import upgrade_to
from tests.support.services import postgres_schema_url

NOW = datetime(2026, 11, 29, 9, 0, 0, 500_000, tzinfo=UTC)


def mth(leaves: list[bytes]) -> bytes:
    """RFC 9162 MTH over leaf hashes, straight from its definition."""
    if not leaves:
        return hashlib.sha256(b"").digest()
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + mth(leaves[:k]) + mth(leaves[k:])).digest()


@pytest.fixture
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def ctx(db: Database, key: ec.EllipticCurvePrivateKey) -> Any:
    now = {"t": NOW}
    return SimpleNamespace(
        db=db,
        pki=SimpleNamespace(signer=SimpleNamespace(private_key=key)),
        clock=lambda: now["t"],
        signer_jose=wire.jose_key(key),
        now=now,
    )


def append(
    db: Database, *records: Record | entries.LegacyItem, at: datetime = NOW
) -> list[entries.AuditEntry]:
    return db.run(lambda conn: store.append(conn, at, list(records)))


def all_entries(db: Database) -> list[entries.AuditEntry]:
    with db.read() as conn:
        return list(store.iter_entries(conn, chunk=7))


def test_leaf_hash_is_sha256_of_zero_and_the_jcs_of_the_content(db: Database) -> None:
    record = Record("device:car", "order.approved", {"amount": 100, "b": [1, "é"]}, "car",
                    "pay_1", "o-1")  # fmt: skip
    (entry,) = append(db, record)
    content: dict[str, Any] = {
        "index": 0,
        "ts": 1795942800,
        "actor": "device:car",
        "action": "order.approved",
        "device_id": "car",
        "payment_id": "pay_1",
        "order_id": "o-1",
        "data": {"amount": 100, "b": [1, "é"]},
    }
    expected = hashlib.sha256(b"\x00" + rfc8785.dumps(content)).hexdigest()
    assert entry.leaf_hash == expected
    assert all_entries(db) == [entry]
    assert entry.content() == content
    assert entry.data == '{"amount":100,"b":[1,"é"]}'


def test_payment_and_order_ids_in_data_are_copied_to_the_top_level(db: Database) -> None:
    (entry,) = append(db, ("device:car", "order.declined", "car",
                           {"payment_id": "pay_9", "order_id": "o-9", "reason": None}))  # fmt: skip
    assert (entry.payment_id, entry.order_id, entry.device_id) == ("pay_9", "o-9", "car")
    assert entry.content()["payment_id"] == "pay_9"


@pytest.mark.parametrize(
    "data",
    [{"amount": 1.5}, {"ünï": 1}, {"n": 2**53 + 1}, {"s": "\ud800"}, {"when": NOW}],
    ids=["float", "non-ascii-key", "big-int", "lone-surrogate", "datetime"],
)
def test_content_the_contract_forbids_is_refused(data: dict[str, Any]) -> None:
    with pytest.raises(InvalidContent):
        entries.canonical(entries.content(0, 0, Record("a", "b", data)))


def test_roots_and_proofs_from_the_store_match_the_reference(db: Database) -> None:
    for batch in range(9):
        append(db, *[Record("admin", f"a{batch}.{i}", {"i": i}) for i in range(batch)])
    leaves = [bytes.fromhex(e.leaf_hash) for e in all_entries(db)]
    assert [e.index for e in all_entries(db)] == list(range(36))
    with db.read() as conn:
        size, root, frontier = store.log_state(conn)
        assert (size, root) == (36, mth(leaves).hex())
        assert log.root_of_frontier(frontier).hex() == root
        for n in (1, 5, 16, 17, 36):
            assert store.root_at(conn, n) == mth(leaves[:n])
            for i in range(n):
                proof = store.inclusion_proof(conn, i, n)
                assert log.verify_inclusion(i, n, leaves[i], proof, mth(leaves[:n]))
            for m in range(1, n + 1):
                proof = store.consistency_proof(conn, m, n)
                assert log.verify_consistency(m, n, mth(leaves[:m]), mth(leaves[:n]), proof)


def test_concurrent_appends_get_dense_indexes_in_commit_order(db: Database) -> None:
    threads, rounds = 6, 15

    def worker(n: int) -> None:
        for r in range(rounds):
            append(db, Record("admin", "x", {"worker": n, "round": r, "part": 0}),
                   Record("admin", "x", {"worker": n, "round": r, "part": 1}))  # fmt: skip

    running = [threading.Thread(target=worker, args=(n,)) for n in range(threads)]
    for thread in running:
        thread.start()
    for thread in running:
        thread.join()
    found = all_entries(db)
    assert [e.index for e in found] == list(range(threads * rounds * 2))
    seen = [(json.loads(e.data)["worker"], json.loads(e.data)["round"]) for e in found]
    for n in range(threads):
        mine = [r for w, r in seen if w == n]
        assert mine == sorted(mine) and len(mine) == rounds * 2
    assert seen[0::2] == seen[1::2]  # a transaction's entries stay together
    assert audit_service.verify_audit(db, ec.generate_private_key(ec.SECP256R1()).public_key()) == (
        threads * rounds * 2,
        None,
    )


def test_signed_heads_verify_independently_and_serve_consistency(ctx: Any) -> None:
    empty = audit_service.latest_tree_head(ctx)
    assert _verified(empty, ctx) == {"tree_size": 0, "root_hash": log.EMPTY_ROOT.hex(),
                                     "ts": int(NOW.timestamp())}  # fmt: skip
    append(ctx.db, *[Record("admin", "x", {"i": i}) for i in range(5)])
    ctx.now["t"] = NOW.replace(second=10)
    five = audit_service.sign_tree_head_if_due(ctx)
    assert five is not None and _verified(five, ctx)["tree_size"] == 5
    append(ctx.db, *[Record("admin", "y", {"i": i}) for i in range(8)])
    head, token = audit_service.tree_head_covering(ctx, 13)
    assert head.tree_size == 13 and _verified(token, ctx)["root_hash"] == head.root_hash
    leaves = [bytes.fromhex(e.leaf_hash) for e in all_entries(ctx.db)]
    proof = [bytes.fromhex(h) for h in audit_service.consistency(ctx, 5, 13)]
    assert log.verify_consistency(5, 13, mth(leaves[:5]), mth(leaves), proof)
    assert audit_service.consistency(ctx, 0, 13) == []
    with pytest.raises(Invalid):
        audit_service.consistency(ctx, 13, 5)
    with pytest.raises(NotFound):
        audit_service.consistency(ctx, 4, 13)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database with no tables yet, for migrating step by step."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    return postgres_schema_url(request.getfixturevalue("postgres_database"))


def test_a_hash_chain_is_migrated_into_the_log(empty_database_url: str) -> None:
    database_url = empty_database_url
    upgrade_to(database_url, "0004")
    db = Database(database_url)
    old = [
        ("admin", "owner.created", None, {"id": "own_1", "name": "Ada"}),
        ("device:car", "order.approved", "car", {"payment_id": "pay_1", "amount": 250}),
        ("device:car", "rules.replaced", "car", {"ratio": 0.5, "limit": 3.0}),
    ]
    with db.transaction() as conn:
        for seq, (actor, action, device_id, data) in enumerate(old, start=1):
            conn.execute(
                text(
                    "INSERT INTO audit_log (seq, at, actor, action, device_id, data, prev_hash,"
                    " hash) VALUES (:s, :at, :a, :c, :d, :data, 'p', 'h')"
                ),  # fmt: skip
                {
                    "s": seq,
                    "at": NOW,
                    "a": actor,
                    "c": action,
                    "d": device_id,
                    "data": json.dumps(data),
                },  # fmt: skip
            )
    db.migrate()
    found = all_entries(db)
    assert [(e.index, e.actor, e.ts) for e in found] == [
        (i, actor, int(NOW.timestamp())) for i, (actor, *_rest) in enumerate(old)
    ]
    assert found[1].payment_id == "pay_1"
    assert json.loads(found[2].data) == {"limit": 3, "ratio": "0.5"}
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    assert audit_service.verify_audit(db, key) == (3, None)
    db.dispose()


def _verified(token: str, ctx: Any) -> dict[str, Any]:
    """Checked with joserfc and the public key alone, not with the production verifier."""
    public = ECKey.import_key(ctx.pki.signer.private_key.public_key())
    obj = jws.deserialize_compact(token, public, algorithms=["ES256"])
    assert obj.headers() == {"alg": "ES256", "typ": "kym-tree-head"}
    payload: dict[str, Any] = json.loads(obj.payload)
    return payload


def test_housekeepers_racing_to_sign_sign_one_head(ctx: Any) -> None:
    append(ctx.db, *[Record("admin", "x", {"i": i}) for i in range(3)])
    signed: list[str | None] = []
    racers = [
        threading.Thread(target=lambda: signed.append(audit_service.sign_tree_head_if_due(ctx)))
        for _ in range(4)
    ]
    for racer in racers:
        racer.start()
    for racer in racers:
        racer.join()
    assert len([token for token in signed if token is not None]) == 1
    with ctx.db.read() as conn:
        assert [head.tree_size for head, _ in store.iter_heads(conn)] == [3]


def test_a_clock_stepped_back_does_not_stop_heads_being_signed(ctx: Any) -> None:
    ctx.now["t"] = NOW + timedelta(hours=1)  # the clock ran an hour fast...
    append(ctx.db, Record("admin", "x", {}))
    assert audit_service.sign_tree_head_if_due(ctx) is not None
    ctx.now["t"] = NOW + timedelta(seconds=5)  # ...and is corrected: the latest head is ahead
    append(ctx.db, Record("admin", "y", {}))
    token = audit_service.sign_tree_head_if_due(ctx)
    assert token is not None and _verified(token, ctx)["tree_size"] == 2
    ctx.now["t"] += timedelta(seconds=1)  # the interval counts from that head again
    append(ctx.db, Record("admin", "z", {}))
    assert audit_service.sign_tree_head_if_due(ctx) is None


def test_a_signed_head_of_the_empty_log_with_another_root_is_caught(ctx: Any) -> None:
    audit_service.sign_tree_head(ctx)
    append(ctx.db, Record("admin", "x", {}))
    with ctx.db.transaction() as conn:
        conn.execute(text("DELETE FROM tree_heads"))
    forged = heads.TreeHead(0, "ab" * 32, int(NOW.timestamp()))
    token = heads.sign(forged, ctx.pki.signer.private_key)
    with ctx.db.transaction() as conn:
        store.insert_head(conn, forged, token)
    problem = audit_service.verify_audit(ctx.db, ctx.pki.signer.private_key.public_key())[1]
    assert problem is not None and "signed tree head of size 0" in problem[1]
