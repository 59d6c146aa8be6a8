"""The audit log through the gateway: payments leave entries naming them, signed tree heads
follow, and `kym audit verify` catches any change to a row, a cut tail, a forged head or node
(contract sections 1 and 9)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from dataclasses import replace
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi.testclient import TestClient
from joserfc import jws
from joserfc.jwk import ECKey
from sqlalchemy import text

from devices import keystore
from gateway.audit import heads, log
from gateway.audit import service as audit_service
from gateway.audit import store as audit_store
from gateway.http.app import create_app
from gateway.service import verify_audit
from tests.support.world import ADMIN, Clock, World, bearer


def run_verify(world: World) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "audit",
            "verify",
            "--data-dir",
            str(world.ctx.settings.data_dir),
            "--database-url",
            world.ctx.db.url,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def verify(world: World) -> tuple[int, tuple[int, str] | None]:
    return verify_audit(world.ctx.db, world.ctx.pki.signer.private_key.public_key())


def produce_entries(world: World) -> str:
    """A payment, with a tree head signed before it and one after; its payment_id."""
    shop = world.party("merchants", {"name": "shop", "category": "fuel"})
    car = world.device("car", rules={"currency": "EUR"})
    audit_service.sign_tree_head(world.ctx)
    result = car.send(car.order(type="pay", payee=shop["id"], amount=100, currency="EUR"))
    assert result["status"] == "approved"
    audit_service.sign_tree_head(world.ctx)
    return str(result["payment_id"])


def sql(world: World, statement: str, **params: object) -> None:
    with world.ctx.db.transaction() as conn:
        conn.execute(text(statement), params)


def approved_index(world: World) -> int:
    with world.ctx.db.read() as conn:
        return int(
            conn.exec_driver_sql(
                "SELECT leaf_index FROM audit_log WHERE action = 'order.approved'"
            ).scalar_one()
        )


def test_intact_log_verifies(world: World) -> None:
    produce_entries(world)
    done = run_verify(world)
    assert done.returncode == 0, done.stderr
    assert "intact" in done.stdout


def test_the_payment_entry_names_the_payment_at_the_top_level(world: World) -> None:
    payment_id = produce_entries(world)
    with world.ctx.db.read() as conn:
        found = list(audit_store.iter_entries(conn, payment_id=payment_id))
    assert [entry.action for entry in found] == ["order.approved"]
    content = found[0].content()
    assert content["payment_id"] == payment_id
    assert content["order_id"] == content["data"]["order_id"]
    assert set(content) <= {"index", "ts", "actor", "action", "device_id", "payment_id",
                            "order_id", "data"}  # fmt: skip
    assert isinstance(content["ts"], int)


def test_changed_row_is_named(world: World) -> None:
    produce_entries(world)
    sql(
        world,
        "UPDATE audit_log SET data = replace(data, '100', '999') WHERE action = 'order.approved'",
    )
    done = run_verify(world)
    assert done.returncode == 1
    assert f"entry {approved_index(world)}:" in done.stderr


COLUMNS = [
    ("ts", 1),
    ("actor", "admin"),
    ("action", "x"),
    ("device_id", "dev_x"),
    ("payment_id", "pay_x"),
    ("order_id", "ord_x"),
    ("data", '{"amount":100}'),
    ("data", '{"amount": 100, "currency": "EUR"}'),
    ("leaf_hash", "ab" * 32),
    ("device_id", None),
]


def test_every_column_is_covered(world: World) -> None:
    produce_entries(world)
    index = approved_index(world)
    for column, value in COLUMNS:
        with world.ctx.db.read() as conn:
            original = conn.exec_driver_sql(
                f"SELECT {column} FROM audit_log WHERE leaf_index = {index}"
            ).scalar_one()
        sql(world, f"UPDATE audit_log SET {column} = :v WHERE leaf_index = {index}", v=value)
        count, problem = verify(world)
        assert problem is not None and problem[0] == index, (column, problem)
        sql(world, f"UPDATE audit_log SET {column} = :v WHERE leaf_index = {index}", v=original)
        assert verify(world)[1] is None, column


def test_deleting_the_tail_is_detected(world: World) -> None:
    produce_entries(world)
    sql(world, "DELETE FROM audit_log WHERE leaf_index = (SELECT max(leaf_index) FROM audit_log)")
    done = run_verify(world)
    assert done.returncode == 1
    assert "anchor" in done.stderr


def test_cutting_the_tail_and_rewinding_the_anchor_is_caught_by_the_signed_head(
    world: World,
) -> None:
    produce_entries(world)
    with world.ctx.db.read() as conn:
        size, _root, _frontier = audit_store.log_state(conn)
    cut = size - 1
    with world.ctx.db.transaction() as conn:
        root = audit_store.root_at(conn, cut).hex()
        frontier = [audit_store.stored_nodes(conn, [ref])[ref] for ref in log.frontier_nodes(cut)]
    sql(world, f"DELETE FROM audit_log WHERE leaf_index >= {cut}")
    sql(
        world,
        "UPDATE chain_head SET seq = :s, hash = :h, frontier = :f WHERE name = 'audit'",
        s=cut,
        h=root,
        f="".join(h.hex() for h in frontier),
    )
    count, problem = verify(world)
    assert problem is not None and "signed tree head" in problem[1], problem


def test_a_forged_or_edited_tree_head_is_caught(world: World) -> None:
    produce_entries(world)
    with world.ctx.db.read() as conn:
        (head, token), *_ = list(audit_store.iter_heads(conn))[-1:]
    header, payload, signature = token.split(".")
    for column, value in [
        ("root_hash", "00" * 32),
        ("ts", head.ts + 1),
        ("jws", f"{header}.{payload}.{signature[:-4]}AAAA"),
    ]:
        sql(
            world,
            f"UPDATE tree_heads SET {column} = :v WHERE tree_size = {head.tree_size}",
            v=value,
        )
        problem = verify(world)[1]
        assert problem is not None and "signed tree head" in problem[1], column
        sql(world, f"UPDATE tree_heads SET {column} = :v WHERE tree_size = {head.tree_size}",
            v=getattr(head, column) if column != "jws" else token)  # fmt: skip
        assert verify(world)[1] is None


def test_a_changed_merkle_node_is_caught(world: World) -> None:
    for n in range(16):
        world.party("owners", {"name": f"o{n}", "timezone": "UTC"})
    sql(world, "UPDATE merkle_nodes SET hash = :v WHERE level = 4 AND node_index = 0", v="0" * 64)
    problem = verify(world)[1]
    assert problem == (0, "entries 0 to 15 do not hash to the stored Merkle node (4, 0)")
    sql(world, "DELETE FROM merkle_nodes")
    problem = verify(world)[1]
    assert problem is not None and "Merkle node (4, 0)" in problem[1]


def test_heads_are_signed_while_entries_are_added(world: World, clock: Clock) -> None:
    world.party("owners", {"name": "a", "timezone": "UTC"})
    first = audit_service.sign_tree_head_if_due(world.ctx)
    assert first is not None
    assert audit_service.sign_tree_head_if_due(world.ctx) is None  # nothing new
    world.party("owners", {"name": "b", "timezone": "UTC"})
    assert audit_service.sign_tree_head_if_due(world.ctx) is None  # too soon
    clock.advance(audit_service.TREE_HEAD_INTERVAL_S)
    second = audit_service.sign_tree_head_if_due(world.ctx)
    assert second is not None
    sizes = [json.loads(_payload(t))["tree_size"] for t in (first, second)]
    assert sizes[1] > sizes[0]
    assert verify(world)[1] is None


def test_any_party_reads_the_tree_head_and_consistency_proofs(world: World) -> None:
    shop = world.party("merchants", {"name": "shop", "category": "fuel"})
    first = world.api.get("/v1/audit/tree-head", headers=bearer(shop["api_key"]))
    assert first.status_code == 200 and first.headers["content-type"].startswith("text/plain")
    world.party("owners", {"name": "a", "timezone": "UTC"})
    audit_service.sign_tree_head(world.ctx)
    second = world.api.get("/v1/audit/tree-head", headers=ADMIN)
    old, new = (_head(world, token.text) for token in (first, second))
    assert new["tree_size"] > old["tree_size"] > 0
    answer = world.api.get(
        "/v1/audit/consistency",
        params={"from": old["tree_size"], "to": new["tree_size"]},
        headers=bearer(shop["api_key"]),
    )
    assert answer.status_code == 200, answer.text
    proof = [bytes.fromhex(h) for h in answer.json()["proof"]]
    assert log.verify_consistency(
        old["tree_size"],
        new["tree_size"],
        bytes.fromhex(old["root_hash"]),
        bytes.fromhex(new["root_hash"]),
        proof,
    )
    unsigned = {"from": old["tree_size"], "to": new["tree_size"] + 1}
    assert world.api.get("/v1/audit/consistency", params=unsigned, headers=ADMIN).status_code == 404
    backwards = {"from": new["tree_size"], "to": old["tree_size"]}
    assert (
        world.api.get("/v1/audit/consistency", params=backwards, headers=ADMIN).status_code == 422
    )
    huge = {"from": 0, "to": 10**23}  # beyond any database integer: 422, not a 500
    assert world.api.get("/v1/audit/consistency", params=huge, headers=ADMIN).status_code == 422
    assert world.api.get("/v1/audit/tree-head").status_code == 401


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_sqlite_file_tampered_directly(world: World) -> None:
    """The contract's promise about editing the SQLite file itself."""
    assert world.ctx.db.is_sqlite
    produce_entries(world)
    path = world.ctx.db.url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as raw:
        raw.execute("UPDATE audit_log SET actor = 'someone' WHERE leaf_index = 0")
    done = run_verify(world)
    assert done.returncode == 1
    assert "entry 0:" in done.stderr


def test_after_the_signer_is_renewed_the_served_head_verifies_against_its_certificate(
    world: World, clock: Clock
) -> None:
    produce_entries(world)  # heads of two sizes, the latest covering the whole log
    with world.ctx.db.read() as conn:
        latest = audit_store.latest_head(conn)
    assert latest is not None
    clock.advance(710 * 86_400)  # `kym serve` starts again: its signer is renewed, same key
    pki = world.ctx.pki
    renewed = keystore.load_or_create_pki(pki.paths.ca_dir.parent, pki.trust_domain, clock())
    assert renewed.signer.certificate != pki.signer.certificate
    with TestClient(create_app(replace(world.ctx, pki=renewed))) as api:  # the log has not grown
        signer = x509.load_pem_x509_certificate(api.get("/v1/ca/gateway").content)
        served = api.get("/v1/audit/tree-head", headers=ADMIN).text
        public_key = signer.public_key()
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        head = heads.verify(served, public_key)
        valid = (signer.not_valid_before_utc.timestamp(), signer.not_valid_after_utc.timestamp())
        assert valid[0] <= head.ts <= valid[1], (head, valid)  # as a client checks it
        assert (head.tree_size, head.root_hash) == (latest[0].tree_size, latest[0].root_hash)
        with world.ctx.db.read() as conn:
            first = next(audit_store.iter_heads(conn))[0]
        answer = api.get(
            "/v1/audit/consistency",
            params={"from": first.tree_size, "to": head.tree_size},
            headers=ADMIN,
        )
        assert answer.status_code == 200, answer.text
        assert log.verify_consistency(
            first.tree_size,
            head.tree_size,
            bytes.fromhex(first.root_hash),
            bytes.fromhex(head.root_hash),
            [bytes.fromhex(h) for h in answer.json()["proof"]],
        )
    assert verify(world)[1] is None


def _head(world: World, token: str) -> dict[str, Any]:
    """The payload of a head, checked with joserfc and the gateway's public key alone."""
    key = world.ctx.pki.signer.certificate.public_key()  # as GET /v1/ca/gateway hands it out
    assert isinstance(key, ec.EllipticCurvePublicKey)
    public = ECKey.import_key(key)
    checked = jws.deserialize_compact(token, public, algorithms=["ES256"])
    assert checked.headers() == {"alg": "ES256", "typ": "kym-tree-head"}
    payload: dict[str, Any] = json.loads(checked.payload)
    return payload


def _payload(token: str) -> bytes:
    import base64

    segment = token.split(".")[1]
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))


def test_the_housekeeper_signs_a_head_when_one_is_due(world: World, clock: Clock) -> None:
    from gateway.mqtt.housekeeper import Housekeeper

    housekeeper = Housekeeper(world.ctx, [])
    world.party("owners", {"name": "a", "timezone": "UTC"})
    housekeeper.tick()
    world.party("owners", {"name": "b", "timezone": "UTC"})
    clock.advance(audit_service.TREE_HEAD_INTERVAL_S)
    housekeeper.tick()
    with world.ctx.db.read() as conn:
        size, root, _frontier = audit_store.log_state(conn)
        heads = [head for head, _token in audit_store.iter_heads(conn)]
    assert len(heads) == 2
    assert (heads[-1].tree_size, heads[-1].root_hash) == (size, root)


def test_a_housekeeping_chore_that_keeps_failing_holds_up_none_of_the_others(
    world: World, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from gateway.mqtt import housekeeper

    def broken(ctx: Any) -> None:
        raise RuntimeError("a row it cannot handle")

    monkeypatch.setattr(housekeeper, "expire_approvals", broken)  # the first chore of a round
    monkeypatch.setattr(housekeeper, "settle_due_disputes", broken)
    world.party("owners", {"name": "a", "timezone": "UTC"})
    housekeeper.Housekeeper(world.ctx, []).tick()
    with world.ctx.db.read() as conn:
        heads = list(audit_store.iter_heads(conn))
    assert len(heads) == 1  # the tree head, a later chore of the same round, was signed
    assert "housekeeping: expiring approvals failed" in caplog.text
    assert "housekeeping: settling disputes failed" in caplog.text
