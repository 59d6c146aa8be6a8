"""Money that an automatic top-up or a credit line moves out of an owner's source is in the
decision's audit entry (`data.funded_by`), on the gateway's decision and on the owner's, and
the payment's bundle still verifies."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.audit import store as audit_store
from tests.evidence import independent
from tests.funding.offer_setup import offering
from tests.support.evidence import kym_verify
from tests.support.funding import fund, source
from tests.support.world import Dev, World

AUTO = {"currency": "EUR", "auto_top_up": {"below": 0, "to": 500}}


def decision_data(world: World, payment_id: str) -> dict[str, Any]:
    """`data` of the payment's decision entry (`order.approved` or `approval.approve`)."""
    with world.ctx.db.read() as conn:
        found = [
            e.content()["data"]
            for e in audit_store.iter_entries(conn)
            if e.payment_id == payment_id and e.action in ("order.approved", "approval.approve")
        ]
    assert len(found) == 1, found
    return dict(found[0])


def approved(world: World, car: Dev, approval_id: str, **choice: Any) -> tuple[str, Any]:
    """The owner approves: the payment's id, and the answer's `result`."""
    decided = world.api.post(
        f"/v1/approvals/{approval_id}", headers=car.owner, json={"decision": "approve", **choice}
    )
    result = decided.json()["result"]
    assert result["status"] == "approved", decided.text
    paid = world.api.get(f"/v1/devices/{car.id}/payments", headers=car.owner).json()
    return paid["items"][0]["payment_id"], result


def bundle_verifies(world: World, tmp_path: Path, payment_id: str, owner: Any) -> None:
    bundle = world.api.get(f"/v1/payments/{payment_id}/evidence", headers=owner).json()
    ca = world.api.get("/v1/ca").content
    independent.check(bundle, ca)
    code, output = kym_verify(tmp_path, bundle, ca)
    assert code == 0, output


def test_an_automatic_top_up_is_in_the_decision_entry(world: World, tmp_path: Path) -> None:
    shop = world.merchant()
    car = world.device("car", top_up=0, rules=AUTO)
    account = source(world, car.owner)
    assert fund(world, car.owner, account["id"], 10_000, "k1").status_code == 201
    result = car.send(car.order(type="pay", payee=shop["id"], amount=300, currency="EUR"))
    assert result["status"] == "approved" and result["funded_by"], result
    funded_by = decision_data(world, result["payment_id"])["funded_by"]
    assert funded_by == result["funded_by"] == [{"source": account["id"], "amount": 800}]
    bundle_verifies(world, tmp_path, result["payment_id"], car.owner)
    plain = car.send(car.order(type="pay", payee=shop["id"], amount=100, currency="EUR"))
    assert plain["funded_by"] == []  # the wallet alone paid: the entry is as it always was
    assert "funded_by" not in decision_data(world, plain["payment_id"])


def test_a_top_up_the_owner_approved_is_in_the_approval_entry(world: World, tmp_path: Path) -> None:
    shop = world.merchant()
    car = world.device("car", top_up=0, rules={**AUTO, "approval_above": 10})
    account = source(world, car.owner)
    fund(world, car.owner, account["id"], 10_000, "k1")
    pending = car.send(car.order(type="pay", payee=shop["id"], amount=300, currency="EUR"))
    assert pending["status"] == "pending_approval", pending
    payment_id, _ = approved(world, car, pending["approval_id"])
    data = decision_data(world, payment_id)
    assert data["funded_by"] == [{"source": account["id"], "amount": 800}]  # 300 paid, 500 left
    bundle_verifies(world, tmp_path, payment_id, car.owner)


def test_a_credit_line_draw_is_in_the_approval_entry_with_its_plan(
    world: World, tmp_path: Path
) -> None:
    shop, car, line = offering(world)
    pending = car.send(car.order(type="pay", payee=shop["id"], amount=10_000, currency="EUR"))
    assert pending["status"] == "pending_approval", pending
    payment_id, result = approved(world, car, pending["approval_id"], instalments=3)
    [funded] = decision_data(world, payment_id)["funded_by"]
    assert funded == {"source": line["id"], "amount": 10_000, "plan_id": result["plan_id"]}
    bundle_verifies(world, tmp_path, payment_id, car.owner)
