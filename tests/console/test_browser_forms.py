"""What a person meets in the console's forms, in a real headless Chromium against a real
`kym serve`: amounts typed as written ("12.50"), a sign-in that leads back to the page asked
for, and a refused dispute answer that keeps what was typed.

Screenshots go to `docs/screenshots/run/` (ignored by git).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from devices.sdk import DeviceClient, GatewayApi, Registration, provision
from tests.console.test_browser import SHOTS, Household, _post, browser, household
from tests.support.browser import signed_in_page

__all__ = ["browser", "household"]  # the fixtures, shared with the approvals test
pytestmark = pytest.mark.slow


def _api(household: Household) -> httpx.Client:
    headers = {"Authorization": f"Bearer {household.owner_key}"}
    return httpx.Client(base_url=household.base, headers=headers, timeout=10)


def test_an_owner_types_amounts_as_written_and_a_save_without_changes_changes_nothing(
    browser: Any, household: Household
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page, errors = signed_in_page(browser, household.base, household.owner_key)
    with _api(household) as api:
        device_id = api.get("/v1/devices").json()["items"][0]["id"]
        page.goto(f"{household.base}/console/devices/{device_id}")
        assert page.input_value("#f-approval_above") == "10.00"  # 1000 cents, as stored
        assert page.input_value("#f-limit_week") == "80.00"
        assert page.get_attribute("#f-max_amount", "inputmode") == "decimal"
        page.fill("#f-max_amount", "12.5")
        page.click("text=Save rules")
        page.wait_for_selector("text=Rules saved")
        first = api.get(f"/v1/devices/{device_id}/rules").json()
        assert (first["max_amount"], first["approval_above"]) == (1250, 1000)
        assert page.input_value("#f-max_amount") == "12.50"
        assert "now €12.50" in page.locator("#rules #f-max_amount + .hint").inner_text()
        page.reload()
        page.click("text=Save rules")  # nothing changed: nothing changes
        page.wait_for_selector("text=Rules saved")
        assert api.get(f"/v1/devices/{device_id}/rules").json() == first

        page.fill("#f-max_amount", "12,50")
        page.fill("#f-limit_week", "80.005")
        page.press("#f-limit_week", "Enter")
        page.locator("#e-max_amount").wait_for()
        assert page.locator("#e-max_amount").inner_text() == (
            "Write the decimals after a point, e.g. 12.50, without commas."
        )
        assert page.locator("#e-limit_week").inner_text() == "EUR has 2 decimals: write e.g. 12.50."
        assert page.input_value("#f-max_amount") == "12,50"
        assert page.input_value("#f-limit_week") == "80.005"
        page.locator("#rules").screenshot(path=str(SHOTS / "console-rules-amounts.png"))
        assert api.get(f"/v1/devices/{device_id}/rules").json() == first

        page.click("nav >> text=Wallets")
        page.fill("input[name=amount]", "0.5")
        page.click("button:has-text('Top up')")
        page.wait_for_selector("text=topped up by €0.50")
        assert api.get(f"/v1/devices/{device_id}/wallet").json()["balance"] == 10_050
    assert [e for e in errors if "status of 422" not in e] == []  # the refusal answers 422


def test_signing_in_again_returns_to_the_page_that_was_asked_for(
    browser: Any, household: Household
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page, _ = signed_in_page(browser, household.base, household.owner_key)
    page.click("nav >> text=Funding")
    page.click("text=Sign out")
    page.wait_for_url(f"{household.base}/console")
    page.goto(f"{household.base}/console/wallets")  # a bookmark, or the back button
    assert page.url == f"{household.base}/console?next=%2Fconsole%2Fwallets"
    page.screenshot(path=str(SHOTS / "console-signin-next.png"), full_page=True)
    page.keyboard.type(household.owner_key)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{household.base}/console/wallets")
    assert page.locator("h1").inner_text() == "Wallets"

    page.context.clear_cookies()  # the session ends (12 hours, or the key was deleted)
    page.goto(f"{household.base}/console?next=https%3A%2F%2Fevil.example%2F")
    page.fill("#api_key", household.owner_key)
    page.click("button[type=submit]")
    page.wait_for_url(f"{household.base}/console")  # never another site


def _second_device(household: Household, tmp: Path) -> DeviceClient:
    """A meter of the same owner, with €100.00 and rules that let it pay, connected."""
    with httpx.Client(base_url=household.base, timeout=10) as api:
        maker = _post(api, "/v1/integrators", {"name": "Metreco"})
    with _api(household) as api:
        owner_id = api.get("/v1/owners/me").json()["id"]
        registration = Registration(
            owner_id=owner_id, kind="smart_meter", manufacturer="Metreco", model="M1",
            serial_number="SM-0001", category="other",
        )  # fmt: skip
        with GatewayApi(household.base, maker["api_key"]) as integrator:
            identity = provision(tmp / "meter", integrator, registration)
        meter_id = identity.device_id
        assert api.post(f"/v1/devices/{meter_id}/approve").status_code == 200
        top_up = {"amount": 10_000, "currency": "EUR", "idempotency_key": "seed"}
        assert api.post(f"/v1/devices/{meter_id}/wallet/top-ups", json=top_up).is_success
        assert api.put(f"/v1/devices/{meter_id}/rules", json={"currency": "EUR"}).is_success
    fridge = household.fridge
    meter = DeviceClient(identity, fridge.broker_host, fridge.broker_port, fsync=False)
    meter.connect()
    return meter


def _paid(device: DeviceClient, payee: str, amount_minor: int) -> None:
    order_id = device.pay(payee, amount_minor, "EUR")
    assert device.wait_for_result(order_id, timeout_s=15).status == "approved"


def test_a_refused_dispute_answer_keeps_what_the_owner_typed(
    browser: Any, household: Household, tmp_path: Path
) -> None:
    """The fridge was paid €30.00 by the owner's meter, which disputes it; the fridge has spent
    the money since, so accepting (a refund at once) is refused: the answer stays."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    meter = _second_device(household, tmp_path)
    fridge_id = household.fridge.identity.device_id
    try:
        _paid(meter, fridge_id, 3000)
    finally:
        meter.close()
    with _api(household) as api:
        paid = api.get(f"/v1/devices/{meter.identity.device_id}/payments").json()["items"][0]
        body = {"reason": "not_received", "message": "The reading never arrived"}
        dispute = api.post(f"/v1/payments/{paid['payment_id']}/disputes", json=body).json()
        assert api.put(f"/v1/devices/{fridge_id}/rules", json={"currency": "EUR"}).is_success
        _paid(household.fridge, household.shop_id, 12_000)  # leaves the fridge €10.00

        page, errors = signed_in_page(browser, household.base, household.owner_key)
        page.click("nav >> text=Disputes")
        typed = "Sorry: the meter's upload failed; refunding in full."
        answer = page.locator("tr.answer input[name=message]")
        answer.fill(typed)
        page.once("dialog", lambda dialog: dialog.accept())
        page.click("button:has-text('Accept and refund')")
        page.wait_for_selector("[role=alert]")  # the refusal, wherever the page puts it
        assert answer.input_value() == typed
        message = page.locator(f"#e-answer-{dispute['id']}")  # beside the field
        assert message.inner_text().startswith("Fridge · Coldco Frost 3's wallet cannot refund")
        assert answer.get_attribute("aria-describedby") == f"e-answer-{dispute['id']}"
        page.screenshot(path=str(SHOTS / "console-dispute-answer-refused.png"), full_page=True)
        assert api.get("/v1/disputes").json()["items"][0]["status"] == "open"
        page.click("button:has-text('Contest')")  # the same text, sent again as it stands
        page.wait_for_selector("text=The dispute is now under review.")
        assert api.get("/v1/disputes").json()["items"][0]["response"]["message"] == typed
        row = page.locator("tr.answer")  # contested: only giving in is left to the payee
        assert row.locator("button:has-text('Contest')").count() == 0
        assert "until the admin decides you may still accept" in row.inner_text()
        page.screenshot(path=str(SHOTS / "console-dispute-under-review.png"), full_page=True)
    assert [e for e in errors if "status of 409" not in e] == []  # the refusal answers 409
