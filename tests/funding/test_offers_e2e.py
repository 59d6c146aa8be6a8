"""Contract section 8 end to end: a pay over a real broker (mutual TLS) becomes an instalment
offer, the owner approves it with `instalments`, and the device gets the final result paid by
the credit line (`funded_by` naming the plan). The outcomes are tested on the service layer in
`tests/funding/test_offers.py` and `test_offers_approve.py`."""

from __future__ import annotations

from tests.e2e.orders import setup_payer
from tests.funding.offer_setup import POLICY_URL, TOTALS
from tests.support.stack import Stack


def test_an_offer_approved_with_instalments_pays_the_payee_from_the_line(gateway: Stack) -> None:
    garage = gateway.party(
        "merchants", {"name": "garage", "category": "maintenance", "currency": "EUR"}
    )
    car = setup_payer(gateway, "car", top_up=100, rules={"currency": "EUR"})
    owner = {"Authorization": f"Bearer {car.device.owner_key}"}
    line = gateway.api.post(
        "/v1/owners/me/funding-sources",
        headers=owner,
        json={
            "name": "credit",
            "kind": "credit_line",
            "currency": "EUR",
            "credit_limit": 20_000,
            "apr_bps": 1_200,
        },
    ).json()
    policy = {
        "source": line["id"],
        "min_amount": 1_000,
        "max_amount": 50_000,
        "counts": [3, 6],
        "interval_days": 30,
    }
    assert gateway.api.put(POLICY_URL, headers=owner, json=policy).status_code == 200
    order = car.order(type="pay", payee=garage["id"], amount=10_000, currency="EUR")
    waiting = car.send(order)
    assert waiting is not None and waiting["status"] == "pending_approval"
    [item] = gateway.api.get("/v1/approvals?status=pending", headers=owner).json()["items"]
    assert item["why"] == "instalment_offer" and item["id"] == waiting["approval_id"]
    assert [(o["count"], o["total"]) for o in item["offer"]["options"]] == [
        (3, TOTALS[3]),
        (6, TOTALS[6]),
    ]
    decided = gateway.api.post(
        f"/v1/approvals/{item['id']}", headers=owner, json={"decision": "approve", "instalments": 3}
    )
    assert decided.status_code == 200, decided.text
    plan_id = decided.json()["result"]["plan_id"]
    final = car.result_for(order["order_id"], status="approved")
    assert final["funded_by"] == [{"source": line["id"], "amount": 10_000, "plan_id": plan_id}]
    [shown] = gateway.api.get("/v1/owners/me/funding-sources", headers=owner).json()["items"]
    assert (shown["balance"], shown["available"]) == (-TOTALS[3], 20_000 - TOTALS[3])
    wallet = gateway.api.get(f"/v1/devices/{car.id}/wallet", headers=owner).json()
    assert wallet["balance"] == 100  # the line paid: the wallet is as it was
    car.close()
