"""Orders over a real broker over mutual TLS: one end-to-end test per feature (pay and replay,
rejection, approval, its expiry, hold with capture and refund). The outcomes of every rule and
check are tested on the service layer, in `tests/service/test_orders.py`."""

from __future__ import annotations

import time
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec

from devices import wire
from tests.e2e.orders import setup_payer
from tests.support.stack import Stack

OPEN = {"currency": "EUR"}  # rules that let every payment within them through


def merchant(stack: Stack, category: str = "fuel", currency: str = "EUR") -> dict[str, Any]:
    return stack.party(
        "merchants", {"name": f"m-{category}", "category": category, "currency": currency}
    )


def owner_headers(payer: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {payer.device.owner_key}"}


def test_pay_is_approved_moves_money_and_a_replay_gets_it_again(gateway: Stack) -> None:
    shop = merchant(gateway)
    car = setup_payer(gateway, "car", rules=OPEN)
    order = car.order(type="pay", payee=shop["id"], amount=1250, currency="EUR")
    token = wire.sign(order, car.key).encode()
    result = car.send(token, order_id=order["order_id"])
    assert result is not None
    assert result["status"] == "approved" and result["reason"] is None
    assert result["amount"] == 1250 and result["payment_id"].startswith("pay_")
    car.send(token, wait=False)  # the same bytes again, as the SDK re-sends
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not any(m.get("duplicate") for m in car.messages()):
        time.sleep(0.02)
    [duplicate] = [m for m in car.messages() if m.get("duplicate")]
    assert duplicate["payment_id"] == result["payment_id"]
    wallet = gateway.api.get(f"/v1/devices/{car.id}/wallet", headers=owner_headers(car)).json()
    assert wallet == {"currency": "EUR", "balance": 8750, "available": 8750}
    shop_wallet = gateway.api.get(
        "/v1/merchants/me/wallet", headers={"Authorization": f"Bearer {shop['api_key']}"}
    ).json()
    assert shop_wallet == {"currency": "EUR", "balance": 1250}
    car.close()


def test_malformed_messages_are_rejected_and_the_gateway_keeps_serving(gateway: Stack) -> None:
    shop = merchant(gateway)
    car = setup_payer(gateway, "car", rules=OPEN)
    car.send(b"\x00\xffgarbage", wait=False)
    bad = car.result_for(None)
    assert (bad["status"], bad["reason"], bad["device_id"]) == (
        "rejected",
        "invalid_message",
        car.id,
    )
    forged = car.send(
        car.order(type="pay", payee=shop["id"], amount=5, currency="EUR"),
        key=ec.generate_private_key(ec.SECP256R1()),
    )
    assert forged is not None and forged["reason"] == "invalid_signature"
    ok = car.send(car.order(type="pay", payee=shop["id"], amount=5, currency="EUR"))
    assert ok is not None and ok["status"] == "approved"
    car.close()


def test_owner_approval_then_final_result(gateway: Stack) -> None:
    shop = merchant(gateway, "groceries")
    fridge = setup_payer(gateway, "fridge", rules={"currency": "EUR", "approval_above": 1000})
    order = fridge.order(type="pay", payee=shop["id"], amount=4000, currency="EUR")
    waiting = fridge.send(order)
    assert waiting is not None and waiting["status"] == "pending_approval"
    pending = gateway.api.get("/v1/approvals?status=pending", headers=owner_headers(fridge))
    [approval] = pending.json()["items"]
    assert approval["amount"] == 4000 and approval["order_id"] == order["order_id"]
    decided = gateway.api.post(
        f"/v1/approvals/{approval['id']}",
        json={"decision": "approve"},
        headers=owner_headers(fridge),
    )
    assert decided.status_code == 200, decided.text
    assert decided.json()["result"] == {"status": "approved", "reason": None}
    final = fridge.result_for(order["order_id"], status="approved")
    assert final["amount"] == 4000
    again = gateway.api.post(
        f"/v1/approvals/{approval['id']}",
        json={"decision": "decline"},
        headers=owner_headers(fridge),
    )
    assert again.status_code == 409
    second = fridge.order(type="pay", payee=shop["id"], amount=2000, currency="EUR")
    fridge.send(second)
    [approval2] = gateway.api.get(
        "/v1/approvals?status=pending", headers=owner_headers(fridge)
    ).json()["items"]
    gateway.api.post(
        f"/v1/approvals/{approval2['id']}",
        json={"decision": "decline"},
        headers=owner_headers(fridge),
    )
    declined = fridge.result_for(second["order_id"], status="declined")
    assert declined["reason"] == "approval_declined"
    fridge.close()


def test_unanswered_approval_expires_as_declined(gateway: Stack) -> None:
    shop = merchant(gateway, "groceries")
    fridge = setup_payer(
        gateway,
        "fridge",
        rules={"currency": "EUR", "approval_above": 10, "approval_ttl_seconds": 1},
    )
    order = fridge.order(type="pay", payee=shop["id"], amount=50, currency="EUR")
    assert fridge.send(order)["status"] == "pending_approval"  # type: ignore[index]
    expired = fridge.result_for(order["order_id"], status="declined", timeout_s=8)
    assert expired["reason"] == "approval_expired"
    wallet = gateway.api.get(f"/v1/devices/{fridge.id}/wallet", headers=owner_headers(fridge))
    assert wallet.json()["balance"] == 10_000
    fridge.close()


def test_fuel_pump_hold_capture_refund_between_devices(gateway: Stack) -> None:
    car = setup_payer(gateway, "car", rules=OPEN)
    pump = setup_payer(gateway, "pump", top_up=0)
    hold = car.send(
        car.order(type="hold", payee=pump.id, amount=8000, currency="EUR", expires_in=600)
    )
    assert hold is not None and hold["status"] == "approved"
    placed = pump.events("hold_placed")
    deadline = time.monotonic() + 5
    while not placed and time.monotonic() < deadline:
        time.sleep(0.02)
        placed = pump.events("hold_placed")
    assert placed[0]["payment_id"] == hold["payment_id"] and placed[0]["payer_device_id"] == car.id
    wallet = gateway.api.get(f"/v1/devices/{car.id}/wallet", headers=owner_headers(car)).json()
    assert (wallet["balance"], wallet["available"]) == (10_000, 2_000)
    stranger = car.send(car.order(type="capture", payment_id=hold["payment_id"], amount=10))
    assert stranger is not None and stranger["reason"] == "payment_not_found"
    too_much = pump.send(pump.order(type="capture", payment_id=hold["payment_id"], amount=9000))
    assert too_much is not None and too_much["reason"] == "capture_exceeds_hold"
    captured = pump.send(pump.order(type="capture", payment_id=hold["payment_id"], amount=6120))
    assert captured is not None and captured["status"] == "captured"
    assert captured["amount"] == 6120
    again = pump.send(pump.order(type="void", payment_id=hold["payment_id"]))
    assert again is not None and again["reason"] == "hold_not_open"
    over = pump.send(pump.order(type="refund", payment_id=hold["payment_id"], amount=7000))
    assert over is not None and over["reason"] == "refund_exceeds_payment"
    refunded = pump.send(pump.order(type="refund", payment_id=hold["payment_id"], amount=120))
    assert refunded is not None and refunded["status"] == "refunded"
    wallet = gateway.api.get(f"/v1/devices/{car.id}/wallet", headers=owner_headers(car)).json()
    assert (wallet["balance"], wallet["available"]) == (4_000, 4_000)
    deadline = time.monotonic() + 5
    while not car.events("refund_received") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert car.events("hold_captured")[0]["amount"] == 6120
    assert car.events("refund_received")[0]["amount"] == 120
    car.close()
    pump.close()
