"""An instalment offer taken and repaid in a real headless Chromium, against a real `kym serve`
whose fridge pays through the device SDK: the inbox shows the offer's options, the owner picks
one, the plan's schedule appears under Instalments, and Repay collects what is left.

Screenshots go to `docs/screenshots/run/`; `docs/screenshots/console-instalment-offer.png` and
`console-instalments.png` in the repository are copies of them.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.console.test_browser import SHOTS, Household, browser, household
from tests.support.browser import fits_a_phone, phone_of, signed_in_page
from tests.support.funding import savings_and_policy

__all__ = ["browser", "household"]  # the fixtures, shared with the approvals test
pytestmark = pytest.mark.slow
APR_BPS = 1990  # a 60.00 pay on 3 instalments every 30 days: fee 2.94, total 62.94


def _offering(household: Household) -> dict[str, Any]:
    """A savings account of 125.00 and a credit line whose policy offers instalments for any
    pay of 50.00 to 600.00 that would leave less than 300.00 in the owner's balances."""
    policy = {"counts": [3, 6], "keep_at_least": 30_000}
    return savings_and_policy(
        household.base, household.owner_key, policy, top_up=12_500, apr_bps=APR_BPS
    )


def test_an_owner_takes_an_instalment_offer_and_repays_it_in_the_browser(
    browser: Any, household: Household
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    savings = _offering(household)
    page, errors = signed_in_page(browser, household.base, household.owner_key)

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
    phone = phone_of(browser, page)
    plans_url = f"{household.base}/console/instalment-plans"
    fits_a_phone(phone, plans_url, "instalments", SHOTS / "console-instalments-phone.png")
