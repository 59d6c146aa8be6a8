"""Forms as a person meets them in a real headless Chromium against a real `kym serve`: amount
hints that follow the currency chosen in the form (JPY has no decimals, KWD three), and what was
typed kept across a session that ended meanwhile.

Screenshots go to `docs/screenshots/run/` (ignored by git).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.console.test_browser import SHOTS, Household, browser, household
from tests.support.browser import signed_in_page

__all__ = ["browser", "household"]  # the fixtures, shared with the approvals test
pytestmark = pytest.mark.slow


def _api(household: Household) -> httpx.Client:
    headers = {"Authorization": f"Bearer {household.owner_key}"}
    return httpx.Client(base_url=household.base, headers=headers, timeout=10)


def _hint(page: Any, field: str) -> str:
    return str(page.locator(f"#f-{field} + .hint").inner_text())


def test_amount_hints_follow_the_currency_chosen_in_the_form(
    browser: Any, household: Household
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page, errors = signed_in_page(browser, household.base, household.owner_key)
    with _api(household) as api:
        device_id = api.get("/v1/devices").json()["items"][0]["id"]
        page.goto(f"{household.base}/console/devices/{device_id}")
        assert _hint(page, "max_amount") == "in EUR, e.g. 12.50"
        page.fill("#f-currency", "jpy")
        assert _hint(page, "max_amount") == "in JPY, e.g. 1250"
        assert _hint(page, "limit_week").startswith("in JPY, e.g. 1250; several as 100, 5000")
        assert page.get_attribute("#f-max_amount", "inputmode") == "numeric"
        assert "Amounts are in JPY as you write them: 1250 is ¥1,250." in page.inner_text("#rules")
        assert _hint(page, "mandate-max_amount") == "in EUR, e.g. 12.50"  # the saved rules'
        page.fill("#f-max_amount", "12.50")
        assert _hint(page, "max_amount") == "in JPY, e.g. 1250 · JPY has no decimals"
        page.fill("#f-currency", "KWD")
        assert _hint(page, "max_amount") == "in KWD, e.g. 12.500 · now KWD 12.500"
        page.fill("#f-max_amount", "1.25")
        page.fill("#f-approval_above", "")
        page.fill("#f-limit_week", "")
        page.locator("#rules").screenshot(path=str(SHOTS / "console-rules-kwd.png"))
        page.click("text=Save rules")
        page.wait_for_selector("text=Rules saved")
        rules = api.get(f"/v1/devices/{device_id}/rules").json()
        assert (rules["currency"], rules["max_amount"]) == ("KWD", 1250)  # read in KWD's 3
        assert page.input_value("#f-max_amount") == "1.250"
        assert _hint(page, "max_amount") == "in KWD, e.g. 12.500 · now KWD 1.250"
        assert api.put(f"/v1/devices/{device_id}/rules", json={"currency": "EUR"}).is_success

        for line in (("Euro card", "EUR", 100_000), ("Yen card", "JPY", 1_000_000)):
            body = {"name": line[0], "kind": "credit_line", "currency": line[1]}
            made = api.post("/v1/owners/me/funding-sources", json={**body, "credit_limit": line[2]})
            assert made.status_code == 201, made.text
        page.click("nav >> text=Funding")
        page.click("#new-source summary")
        assert _hint(page, "floor") == "in EUR, e.g. 12.50; 0 when empty"
        page.fill("#f-name", "Yen savings")
        page.fill("#f-currency", "JPY")
        page.fill("#f-floor", "500")
        assert _hint(page, "floor") == "in JPY, e.g. 1250; 0 when empty · now ¥500"
        page.locator("#new-source").screenshot(path=str(SHOTS / "console-source-jpy.png"))
        page.click("text=Add source")
        page.wait_for_selector("text=Yen savings added as a balance source.")
        yen = [s for s in api.get("/v1/owners/me/funding-sources").json()["items"]]
        assert [(s["currency"], s["floor"]) for s in yen if s["name"] == "Yen savings"] == [
            ("JPY", 500)
        ]

        assert _hint(page, "min_amount") == "in EUR, e.g. 12.50"  # the first line, Euro card
        page.select_option("#f-source", label="Yen card (JPY)")
        assert _hint(page, "min_amount") == "in JPY, e.g. 1250"
        page.fill("#f-min_amount", "1000")
        page.fill("#f-max_amount", "90000")
        page.fill("#f-counts", "3, 6")
        page.fill("#f-interval_days", "30")
        assert _hint(page, "max_amount") == "in JPY, e.g. 1250 · now ¥90,000"
        page.locator("#policy").screenshot(path=str(SHOTS / "console-policy-jpy.png"))
        page.click("text=Save policy")
        page.wait_for_selector("text=Instalment policy saved.")
        policy = api.get("/v1/owners/me/instalment-policy").json()
        assert (policy["min_amount"], policy["max_amount"]) == (1000, 90_000)
    assert errors == []


def _signed_out_then_in(page: Any, household: Household, send: str) -> None:
    """The session ends while the owner types; they send the form, sign in (a wrong key
    first), and are back on the form's page."""
    page.context.clear_cookies()  # twelve hours passed, or the key that opened it was deleted
    page.click(send)
    page.wait_for_selector("#api_key")
    assert page.locator("[data-kept-note]").is_visible()
    page.screenshot(path=str(SHOTS / "console-signin-kept.png"), full_page=True)
    page.fill("#api_key", "kym_not_a_key")
    page.click("button[type=submit]")
    page.wait_for_selector("text=That is not an owner's API key")
    page.fill("#api_key", household.owner_key)
    page.click("button[type=submit]")
    page.wait_for_selector("[data-kept]")


def test_what_was_typed_survives_a_session_that_ended_meanwhile(
    browser: Any, household: Household
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page, errors = signed_in_page(browser, household.base, household.owner_key)
    with _api(household) as api:
        device_id = api.get("/v1/devices").json()["items"][0]["id"]
        before = api.get(f"/v1/devices/{device_id}/rules").json()
        device_page = f"{household.base}/console/devices/{device_id}"
        page.goto(device_page)
        page.fill("#f-max_amount", "45.5")
        page.fill("#f-allowed_categories", "groceries, fuel")
        _signed_out_then_in(page, household, "text=Save rules")
        assert page.url == device_page
        assert page.input_value("#f-max_amount") == "45.5"
        assert page.input_value("#f-allowed_categories") == "groceries, fuel"
        assert _hint(page, "max_amount") == "in EUR, e.g. 12.50 · now €45.50"
        assert api.get(f"/v1/devices/{device_id}/rules").json() == before  # nothing was sent
        page.locator("#rules").screenshot(path=str(SHOTS / "console-rules-kept.png"))
        page.click("text=Save rules")
        page.wait_for_selector("text=Rules saved")
        assert api.get(f"/v1/devices/{device_id}/rules").json()["max_amount"] == 4550
        assert page.locator("[data-kept]").count() == 0

        page.fill("#f-mandate-payee", household.shop_id)  # on the answer to the rules form
        page.fill("#f-mandate-max_amount", "7.5")
        _signed_out_then_in(page, household, "text=Add mandate")
        assert page.url == device_page  # not the form's POST-only address
        assert page.input_value("#f-mandate-payee") == household.shop_id
        assert page.input_value("#f-mandate-max_amount") == "7.5"
        assert page.input_value("#f-max_amount") == "45.50"  # the other form: as saved
        page.click("text=Add mandate")
        page.wait_for_selector("text=is active")
        mandates = api.get(f"/v1/devices/{device_id}/mandates").json()["items"]
        assert [m["max_amount"] for m in mandates] == [750]
        page.reload()
        assert page.locator("[data-kept]").count() == 0  # restored once, then forgotten
    assert [e for e in errors if "status of 401" not in e] == []  # the ended session's answers


def test_what_was_typed_survives_a_sign_out_and_in_in_another_tab(
    browser: Any, household: Household
) -> None:
    """The owner signs out and in again in a second tab, then sends the form still open in the
    first: its token is the old session's, so nothing is changed, and the answer leads back to
    the form with what was typed in it."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    tabs = browser.new_context(viewport={"width": 1100, "height": 900})  # shares its cookies
    page, other = tabs.new_page(), tabs.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    _sign_in(page, household)
    with _api(household) as api:
        device_id = api.get("/v1/devices").json()["items"][0]["id"]
        before = api.get(f"/v1/devices/{device_id}/rules").json()
        device_page = f"{household.base}/console/devices/{device_id}"
        page.goto(device_page)
        page.fill("#f-max_amount", "33.3")
        other.goto(f"{household.base}/console")
        other.click("button:has-text('Sign out')")
        _sign_in(other, household)
        page.click("text=Save rules")
        page.wait_for_selector("[data-kept-stale]")
        assert "nothing was changed" in page.inner_text("[role=alert]")
        page.screenshot(path=str(SHOTS / "console-stale-form.png"), full_page=True)
        assert api.get(f"/v1/devices/{device_id}/rules").json() == before
        page.click("text=go back to the form")
        page.wait_for_selector("[data-kept]")
        assert page.url == device_page
        assert page.input_value("#f-max_amount") == "33.3"
        page.click("text=Save rules")
        page.wait_for_selector("text=Rules saved")
        assert api.get(f"/v1/devices/{device_id}/rules").json()["max_amount"] == 3330
        assert api.put(f"/v1/devices/{device_id}/rules", json=before).is_success
    tabs.close()
    assert [e for e in errors if "status of 403" not in e] == []  # the refusal answers 403


def _sign_in(page: Any, household: Household) -> None:
    page.goto(f"{household.base}/console")
    page.fill("#api_key", household.owner_key)
    page.click("button[type=submit]")
    page.wait_for_url(f"{household.base}/console")
