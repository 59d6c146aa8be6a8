"""An instalment offer taken and repaid in a real headless Chromium, against a real `kym serve`
whose fridge pays through the device SDK: the inbox shows the offer's options, the owner picks
one, the plan's schedule appears under Instalments, and Repay collects what is left.

Screenshots go to `docs/screenshots/run/`; `docs/screenshots/console-instalment-offer.png` and
`console-instalments.png` in the repository are copies of them.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.console.test_browser import SHOTS, Household, browser, household

__all__ = ["browser", "household"]  # the fixtures, shared with the approvals test
pytestmark = pytest.mark.slow
APR_BPS = 1990  # a 60.00 pay on 3 instalments every 30 days: fee 2.94, total 62.94


def _offering(household: Household) -> dict[str, Any]:
    """A savings account of 125.00 and a credit line whose policy offers instalments for any
    pay of 50.00 to 600.00 that would leave less than 300.00 in the owner's balances."""
    owner = {"Authorization": f"Bearer {household.owner_key}"}
    with httpx.Client(base_url=household.base, headers=owner, timeout=10) as api:
        savings = {"name": "Savings account", "kind": "balance", "currency": "EUR", "floor": 2000}
        made = api.post("/v1/owners/me/funding-sources", json=savings)
        assert made.status_code == 201, made.text
        money = {"amount": 12_500, "currency": "EUR", "idempotency_key": "salary"}
        assert api.post(f"/v1/funding-sources/{made.json()['id']}/top-ups", json=money).is_success
        card: dict[str, Any] = {"name": "Household card", "kind": "credit_line"}
        card |= {"currency": "EUR", "credit_limit": 100_000, "apr_bps": APR_BPS}
        line = api.post("/v1/owners/me/funding-sources", json=card)
        assert line.status_code == 201, line.text
        terms = {"source": line.json()["id"], "min_amount": 5000, "max_amount": 60_000}
        terms |= {"counts": [3, 6], "interval_days": 30, "keep_at_least": 30_000}
        assert api.put("/v1/owners/me/instalment-policy", json=terms).status_code == 200
    return dict(made.json())


def test_an_owner_takes_an_instalment_offer_and_repays_it_in_the_browser(
    browser: Any, household: Household
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    savings = _offering(household)
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto(f"{household.base}/console")
    page.fill("#api_key", household.owner_key)
    page.click("button[type=submit]")
    page.wait_for_url(f"{household.base}/console")

    order_id = household.fridge.pay(household.shop_id, 6000, "EUR", description="New shelves")
    waiting = household.fridge.wait_for_result(order_id, timeout_s=15, final=False)
    assert waiting.status == "pending_approval"
    page.goto(f"{household.base}/console")  # the live refresh is the approvals test's subject
    card = page.locator("[data-approval]")
    offer = card.locator(".offer").inner_text()
    assert "3 × €20.98" in offer and "fee €2.94 · total €62.94" in offer
    assert "6 × " in offer
    page.screenshot(path=str(SHOTS / "console-instalment-offer.png"), full_page=True)

    card.locator("button[data-count='3']").click()
    page.wait_for_selector("text=paid from your credit line: 3 instalments")
    result = household.fridge.wait_for_result(order_id, timeout_s=15)
    assert (result.status, result.reason) == ("approved", None)

    page.click("nav >> text=Funding")
    line = page.locator("[data-source]", has_text="Household card").inner_text()
    assert "€937.06" in line and "Owed\n€62.94" in line  # the line paid; the plan owes it
    page.click("nav >> text=Instalments")
    plan = page.locator("[data-plan]")
    assert plan.count() == 1
    text = plan.inner_text()
    assert "€60.00 + €2.94 fee = €62.94" in text and text.count("SCHEDULED") == 3
    assert "Household card" in text and "Corner Grocer" in text
    page.screenshot(path=str(SHOTS / "console-instalments.png"), full_page=True)

    page.once("dialog", lambda dialog: dialog.accept())
    plan.locator("button", has_text="Repay €62.94 now").click()
    page.wait_for_selector("text=Plan repaid: €62.94 collected from your balance sources")
    assert page.locator("[data-plan] .status").first.inner_text().lower() == "repaid"
    assert page.locator("[data-plan] .status-paid").count() == 3
    page.click("nav >> text=Funding")
    balance = page.locator(f"[data-source='{savings['id']}'] [data-balance]").inner_text()
    assert balance == "€62.06"  # 125.00 less the 62.94 repaid
    page.screenshot(path=str(SHOTS / "console-instalments-repaid.png"), full_page=True)
    assert errors == []
    phone = browser.new_page(viewport={"width": 390, "height": 844}, is_mobile=True)
    phone.context.add_cookies(page.context.cookies())
    phone.goto(f"{household.base}/console/instalment-plans")
    width = phone.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, "the instalments page scrolls sideways on a phone"
    phone.screenshot(path=str(SHOTS / "console-instalments-phone.png"), full_page=True)
