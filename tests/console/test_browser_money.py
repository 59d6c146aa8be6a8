"""The console's funding, disputes and audit trail pages in a real headless Chromium, against a
real `kym serve` whose fridge pays through the device SDK over mutual TLS.

Screenshots go to `docs/screenshots/run/` (ignored by git); those kept in the repository
(`docs/screenshots/console-funding.png`, `console-disputes.png`, `console-audit.png`) are
copies of them.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.console.test_browser import SHOTS, Household, browser, household
from tests.support.browser import fits_a_phone, phone_of, signed_in_page
from tests.support.funding import savings_and_policy

__all__ = ["browser", "household"]  # the fixtures, shared with the approvals test
pytestmark = pytest.mark.slow


def _funded(household: Household) -> dict[str, Any]:
    """A balance source and a credit line with an instalment policy; the balance source."""
    policy = {"counts": [3, 6, 12], "keep_at_least": 2000}
    return savings_and_policy(household.base, household.owner_key, policy)


def _balance_shown(page: Any, source_id: str) -> str:
    return str(page.locator(f"[data-source='{source_id}'] [data-balance]").inner_text())


def test_an_owner_tops_up_disputes_and_reads_the_audit_trail_in_the_browser(
    browser: Any, household: Household
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    savings = _funded(household)
    page, errors = signed_in_page(browser, household.base, household.owner_key)

    page.click("nav >> text=Funding")
    assert _balance_shown(page, savings["id"]) == "€0.00"
    assert page.locator("#policy").inner_text().count("3, 6, 12, every 30 days") == 1
    refused = page.request.post(  # the session cookie alone is not enough to move money
        f"{household.base}/console/funding-sources/{savings['id']}/top-ups",
        form={"amount": "9999", "currency": "EUR", "idempotency_key": "forged"},
    )
    assert refused.status == 403
    card = page.locator(f"[data-source='{savings['id']}']")
    card.locator("input[name=amount]").fill("125")
    card.locator("button", has_text="Top up").click()
    page.wait_for_selector("text=Savings account topped up by €125.00")
    assert _balance_shown(page, savings["id"]) == "€125.00"
    assert "€105.00 available to draw" in card.inner_text()  # less the €20.00 floor
    page.screenshot(path=str(SHOTS / "console-funding.png"), full_page=True)
    page.click("#new-source summary")
    page.click("#policy summary")
    page.screenshot(path=str(SHOTS / "console-funding-forms.png"), full_page=True)

    order_id = household.fridge.pay(household.shop_id, 640, "EUR", description="Yoghurt")
    assert household.fridge.wait_for_result(order_id, timeout_s=15).status == "approved"
    page.click("nav >> text=Payments")
    page.screenshot(path=str(SHOTS / "console-payments-dispute.png"), full_page=True)
    page.click("a.button:has-text('Dispute')")
    page.select_option("#f-reason", "defective")
    page.fill("#f-message", "The yoghurt was two weeks past its date")
    page.locator("#open-dispute").screenshot(path=str(SHOTS / "console-dispute-form.png"))
    page.click("text=Open the dispute")
    page.wait_for_selector("text=Your dispute of €6.40 is open")
    row = page.locator("[data-dispute]")
    assert row.count() == 1 and "open" in row.locator(".status").inner_text().lower()
    assert "two weeks past its date" in row.inner_text()
    page.screenshot(path=str(SHOTS / "console-disputes.png"), full_page=True)

    page.click("nav >> text=Audit trail")
    table = page.locator("table.audit")
    assert table.locator("text=dispute.opened").count() == 1
    assert table.locator("text=order.approved").count() >= 1
    head = page.locator("#tree-head").inner_text()
    assert "signature checked" in head
    page.screenshot(path=str(SHOTS / "console-audit.png"), full_page=True)
    assert errors == []

    phone = phone_of(browser, page)
    for name in ("funding", "disputes", "audit"):
        url = f"{household.base}/console/{name}"
        fits_a_phone(phone, url, name, SHOTS / f"console-{name}-phone.png")


def test_an_empty_instalment_count_is_refused_in_the_browser_keeping_the_input(
    browser: Any, household: Household
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    _funded(household)
    page, errors = signed_in_page(browser, household.base, household.owner_key)
    page.click("nav >> text=Funding")
    page.click("#policy summary")
    page.fill("#f-counts", "3,,6")
    page.fill("#f-max_amount", "90.00")
    page.press("#f-max_amount", "Enter")  # as a person on a keyboard sends it
    message = page.locator("#e-counts")
    message.wait_for()
    assert message.inner_text().startswith("An item is empty (two commas together")
    assert page.get_attribute("#f-counts", "aria-invalid") == "true"
    assert page.input_value("#f-counts") == "3,,6" and page.input_value("#f-max_amount") == "90.00"
    page.locator("#policy").screenshot(path=str(SHOTS / "console-policy-error.png"))
    headers = {"Authorization": f"Bearer {household.owner_key}"}
    with httpx.Client(base_url=household.base, headers=headers, timeout=10) as api:
        policy = api.get("/v1/owners/me/instalment-policy").json()
    assert (policy["counts"], policy["max_amount"]) == ([3, 6, 12], 60_000)
    assert [e for e in errors if "status of 422" not in e] == []  # the page answers 422
