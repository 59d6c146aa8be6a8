"""The audit trail on the console reads as words, not JSON: amounts with their currency's
decimals, times with their zone, who acted as the owner knows them; the stored JSON stays one
hover away."""

from __future__ import annotations

import html
import re

from fastapi.testclient import TestClient

from gateway.console.details import describe
from tests.support.console import sign_in
from tests.support.world import World

ROW = re.compile(r"<tr>\s*(.*?)</tr>", re.S)


def test_money_times_and_nested_data_are_written_for_a_person() -> None:
    approved = {
        "amount": 1050,
        "currency": "EUR",
        "consent": {"basis": "rules", "decided_at": 1_796_087_968, "decided_by": "gateway"},
        "order_sha256": "dde0d67b596421e63aaffb367960cb8f8d6b27ef83faca91fc8595ea00000000",
        "payment_id": None,
    }
    assert describe(approved, "JPY", "Europe/Berlin") == (
        "amount €10.50 · consent (basis rules, decided at 2026-12-01 02:19 CET, "
        "decided by gateway) · order sha256 dde0d67b5964…"
    )
    mandate = {"limits": [{"amount": 3000, "period": "month"}], "max_amount": 500}
    assert (
        describe(mandate, "EUR", None) == "limits (amount €30.00, period month) · max amount €5.00"
    )
    assert describe({"floor_minor": 2000, "attested": False}, "JPY", None) == (
        "floor ¥2,000 · attested no"
    )
    assert describe({"from": "pending", "to": "active"}, "EUR", None) == "from pending · to active"
    assert describe({"note": "x" * 300}, "EUR", None).endswith("x…")


def test_the_device_page_and_the_audit_page_show_entries_in_words(
    world: World, browser_like: TestClient
) -> None:
    car = world.device("car", rules={"currency": "EUR", "max_amount": 2000})
    shop = world.merchant("groceries")
    assert car.pay(shop["id"], 1050) == ("approved", None)
    sign_in(browser_like, car.owner["Authorization"].removeprefix("Bearer "))
    for url in (f"/console/devices/{car.id}", f"/console/audit?device={car.id}"):
        page = browser_like.get(url).text
        rows = [html.unescape(row) for row in ROW.findall(page) if "order.approved" in row]
        assert len(rows) == 1, url
        row = rows[0]
        assert ">amount €10.50 · consent (basis rules, decided at " in row, row
        assert re.search(r"decided at \d{4}-\d\d-\d\d \d\d:\d\d CET", row), row
        assert 'title="{"amount": 1050, ' in row  # the stored JSON, on hover
        assert '>{"amount"' not in row and f">device:{car.id}<" not in row
        rules_row = next(html.unescape(r) for r in ROW.findall(page) if "rules.replaced" in r)
        assert ">you<" in rules_row and "max amount €20.00" in rules_row
