"""Signed tree heads are evidence: `kym audit verify` fails, naming what is missing, when any of
them is deleted (all of them, the latest ones, one between others), although the entries and
the anchor of the log still match; and a head signed again for a size already signed (after
the signer's certificate is renewed) is kept like the others, so that every head handed out
is in the database."""

from __future__ import annotations

from dataclasses import replace
from functools import partial

from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from sqlalchemy import Connection, text

from devices import keystore
from gateway.audit import heads, log
from gateway.audit import service as audit_service
from gateway.audit import store as audit_store
from gateway.audit.entries import Record
from gateway.db import Database
from gateway.http.app import create_app
from tests.devices.test_key_migration import empty_database_url  # noqa: F401 (a fixture)
from tests.service.test_audit import produce_entries, run_verify, sql, verify
from tests.support.migrations import upgrade_to
from tests.support.world import ADMIN, Clock, World


def kept_sizes(world: World) -> list[int]:
    with world.ctx.db.read() as conn:
        return [head.tree_size for head, _token in audit_store.iter_heads(conn)]


def test_deleting_every_signed_tree_head_fails_verify_naming_what_is_missing(
    world: World,
) -> None:
    produce_entries(world)
    first, last = kept_sizes(world)
    assert verify(world)[1] is None
    sql(world, "DELETE FROM tree_heads")
    done = run_verify(world)
    assert done.returncode == 1, done.stderr
    assert done.stderr.splitlines() == [
        f"audit chain BROKEN at entry 0: the latest signed tree head, of size {last}, is "
        "missing from tree_heads (the log's anchor counts 2 signed tree heads up to size "
        f"{last}; it holds none)"
    ]


def test_deleting_the_latest_signed_tree_heads_is_named_from_the_last_one_kept(
    world: World,
) -> None:
    produce_entries(world)
    first, last = kept_sizes(world)
    sql(world, "DELETE FROM tree_heads WHERE tree_size = :s", s=last)
    count, problem = verify(world)
    assert problem == (
        first,
        f"the latest signed tree head, of size {last}, is missing from tree_heads (the log's "
        f"anchor counts 2 signed tree heads up to size {last}; it holds 1, the latest of size "
        f"{first})",
    )


def test_deleting_a_signed_tree_head_between_others_is_named(world: World) -> None:
    produce_entries(world)
    world.party("owners", {"name": "more", "timezone": "UTC"})
    audit_service.sign_tree_head(world.ctx)
    sizes = kept_sizes(world)
    assert len(sizes) == 3
    sql(world, "DELETE FROM tree_heads WHERE tree_size = :s", s=sizes[1])
    problem = verify(world)[1]
    assert problem == (
        0,
        "1 signed tree head is missing from tree_heads (the log's anchor counts 3 signed "
        f"tree heads up to size {sizes[2]}; it holds 2, the latest of size {sizes[2]})",
    )


def test_a_head_put_into_tree_heads_behind_the_gateways_back_is_named(world: World) -> None:
    """Signed with the gateway's key (a copy of it stolen) but not kept by the gateway."""
    produce_entries(world)
    with world.ctx.db.read() as conn:
        latest = audit_store.latest_head(conn)
    assert latest is not None
    extra = replace(latest[0], ts=latest[0].ts + 1)
    token = heads.sign(extra, world.ctx.pki.signer.private_key)
    sql(
        world,
        "INSERT INTO tree_heads (tree_size, root_hash, ts, jws) VALUES (:s, :r, :t, :j)",
        s=extra.tree_size,
        r=extra.root_hash,
        t=extra.ts,
        j=token,
    )
    problem = verify(world)[1]
    assert problem is not None, problem
    assert problem[1].startswith("tree_heads holds signed tree heads that the anchor does not")


def test_a_head_signed_again_after_the_signer_is_renewed_is_kept_and_verified(
    world: World, clock: Clock
) -> None:
    payment_id = produce_entries(world)
    with world.ctx.db.read() as conn:
        before = list(audit_store.iter_heads(conn))
    clock.advance(710 * 86_400)  # `kym serve` starts again: its signer is renewed, same key
    pki = world.ctx.pki
    renewed = keystore.load_or_create_pki(pki.paths.ca_dir.parent, pki.trust_domain, clock())
    ctx = replace(world.ctx, pki=renewed)
    with TestClient(create_app(ctx)) as api:  # the log has not grown
        served = api.get("/v1/audit/tree-head", headers=ADMIN).text
        assert api.get("/v1/audit/tree-head", headers=ADMIN).text == served  # signed once
        bundle = api.get(f"/v1/payments/{payment_id}/evidence", headers=ADMIN).json()
    head = heads.verify(served, renewed.signer.private_key.public_key())
    assert (head.tree_size, head.root_hash) == (before[-1][0].tree_size, before[-1][0].root_hash)
    assert head.ts >= audit_service.signer_since(ctx)
    with world.ctx.db.read() as conn:
        after = list(audit_store.iter_heads(conn))
    assert after == [*before, (head, served)]  # kept beside the first head of that size
    assert bundle["audit"]["tree_head"] == served
    assert verify(world)[1] is None
    sql(world, "DELETE FROM tree_heads WHERE ts = :ts", ts=head.ts)
    problem = verify(world)[1]
    assert problem is not None and "1 signed tree head is missing" in problem[1], problem


def test_the_migration_counts_the_heads_kept_before_it(
    empty_database_url: str,  # noqa: F811 (the fixture imported above)
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    upgrade_to(empty_database_url, "0020_early_refusals")
    db = Database(empty_database_url)
    try:
        for n in range(3):  # as the gateway before this revision wrote them
            db.run(partial(_append_and_sign_as_before, key=key, n=n))
        db.migrate()
        assert audit_service.verify_audit(db, key.public_key()) == (3, None)
        with db.read() as conn:
            assert audit_store.heads_anchor(conn) == (3, 3)
        with db.transaction() as conn:
            conn.execute(text("DELETE FROM tree_heads WHERE tree_size = 2"))
        problem = audit_service.verify_audit(db, key.public_key())[1]
        assert problem is not None and "1 signed tree head is missing" in problem[1]
    finally:
        db.dispose()


def _append_and_sign_as_before(conn: Connection, key: ec.EllipticCurvePrivateKey, n: int) -> None:
    audit_store.append(conn, 1_700_000_000 + n, [Record("admin", "x", {"n": n})])
    size, root, _frontier = audit_store.log_state(conn)
    assert size == n + 1 and root != log.EMPTY_ROOT.hex()
    head = heads.TreeHead(size, root, 1_700_000_000 + n)
    token = heads.sign(head, key)
    conn.execute(
        text("INSERT INTO tree_heads (tree_size, root_hash, ts, jws) VALUES (:s, :r, :t, :j)"),
        {"s": size, "r": root, "t": head.ts, "j": token},
    )
