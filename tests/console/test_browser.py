"""The console end to end in a real headless Chromium, against a real `kym serve` and a fridge
that pays through the device SDK over mutual TLS.

Debian's `chromium` is driven by Playwright (its own browser download is not used). Without
chromium or Playwright this skips on a developer machine and fails when KYM_REQUIRE_SERVICES=1.
Screenshots of each page go to `docs/screenshots/run/` (ignored by git); the approvals page's
is the one kept in the repository as `docs/screenshots/console-approvals.png`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, cast

import httpx
import pytest

from devices.sdk import DeviceClient, GatewayApi, Registration, provision
from gateway.context import Context
from gateway.db import Database
from gateway.server import free_port
from tests.e2e.serve_helpers import ADMIN, healthz, serve
from tests.support.browser import fits_a_phone, launched_chromium, phone_of, signed_in_page
from tests.support.openssl import make_openssl_csr

SHOTS = Path(__file__).resolve().parents[2] / "docs" / "screenshots" / "run"
pytestmark = pytest.mark.slow


@dataclass
class Household:
    """A live gateway, an owner with a fridge that pays through the SDK, and a shop."""

    base: str
    owner_key: str
    shop_id: str
    fridge: DeviceClient
    data_dir: Path


@pytest.fixture
def browser() -> Iterator[Any]:
    """Debian's chromium, headless, through Playwright."""
    with launched_chromium() as launched:
        yield launched


@pytest.fixture
def household(tmp_path: Path) -> Iterator[Household]:
    http, mqtt = free_port(), free_port()
    process = serve(tmp_path, tmp_path / "data", http, mqtt)
    try:
        deadline = time.monotonic() + 60
        while healthz(http) != 200:
            assert process.poll() is None, (tmp_path / "serve.log").read_text()
            assert time.monotonic() < deadline, "kym serve did not become healthy"
            time.sleep(0.2)
        base = f"http://127.0.0.1:{http}"
        with httpx.Client(base_url=base, timeout=10) as api:
            household = _household(api, base, mqtt, tmp_path)
        yield household
        household.fridge.close()
    finally:
        process.terminate()
        process.wait(15)


def _post(api: httpx.Client, path: str, body: dict[str, Any], key: str | None = None) -> Any:
    headers = ADMIN if key is None else {"Authorization": f"Bearer {key}"}
    answer = api.post(path, json=body, headers=headers)
    assert answer.status_code in (200, 201), answer.text
    return answer.json()


def _household(api: httpx.Client, base: str, mqtt: int, tmp_path: Path) -> Household:
    owner = _post(api, "/v1/owners", {"name": "Grace", "timezone": "Europe/Berlin"})
    maker = _post(api, "/v1/integrators", {"name": "Coldco"})
    shop = _post(api, "/v1/merchants", {"name": "Corner Grocer", "category": "groceries"})
    registration = Registration(
        owner_id=owner["id"], kind="fridge", manufacturer="Coldco", model="Frost 3",
        serial_number="FR-0042", category="other",
    )  # fmt: skip
    with GatewayApi(base, maker["api_key"]) as integrator:
        identity = provision(tmp_path / "fridge", integrator, registration)
    fridge_id, key = identity.device_id, owner["api_key"]
    _post(api, f"/v1/devices/{fridge_id}/approve", {}, key)
    top_up = {"amount": 10_000, "currency": "EUR", "idempotency_key": "seed"}
    _post(api, f"/v1/devices/{fridge_id}/wallet/top-ups", top_up, key)
    rules = {
        "currency": "EUR",
        "approval_above": 1000,
        "limits": [{"period": "week", "amount": 8000}],
    }
    answer = api.put(
        f"/v1/devices/{fridge_id}/rules", json=rules, headers={"Authorization": f"Bearer {key}"}
    )
    assert answer.status_code == 200, answer.text
    fridge = DeviceClient(identity, "127.0.0.1", mqtt, fsync=False)
    fridge.connect()
    return Household(base, key, shop["id"], fridge, tmp_path / "data")


def _sign_in_link(household: Household) -> str:
    """A one-time sign-in link made on the live gateway's database, as `kym demo` makes one."""
    from gateway.console import sign_in_link

    db = Database(f"sqlite:///{household.data_dir / 'kym.db'}")
    try:
        ctx = SimpleNamespace(db=db, clock=lambda: datetime.now(UTC))
        link = sign_in_link(cast(Context, ctx), household.owner_key, household.base)
    finally:
        db.dispose()
    assert link is not None
    return link


def test_an_owner_approves_the_fridges_order_in_the_browser(
    browser: Any, household: Household
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []  # a script the pages' CSP blocks would show up here
    page.on(
        "console", lambda message: errors.append(message.text) if message.type == "error" else None
    )
    page.goto(f"{household.base}/console")
    page.screenshot(path=str(SHOTS / "console-signin.png"), full_page=True)
    page.fill("#api_key", household.owner_key)
    page.click("button[type=submit]")
    page.wait_for_url(f"{household.base}/console")
    assert page.locator("text=Nothing is waiting for you").is_visible()

    order_id = household.fridge.pay(household.shop_id, 2500, "EUR", description="Milk, eggs")
    waiting = household.fridge.wait_for_result(order_id, timeout_s=15, final=False)
    assert waiting.status == "pending_approval"
    card = page.locator("[data-approval]")
    card.wait_for(timeout=20_000)  # from the event stream: the safety-net poll is every 30 s
    assert "€25.00" in card.inner_text() and "Corner Grocer" in card.inner_text()
    access_log = (household.data_dir.parent / "serve.log").read_text()
    assert '"GET /v1/events/stream HTTP/1.1" 200' in access_log  # with the session cookie
    page.wait_for_function("document.querySelector('.countdown').textContent.endsWith('left')")
    page.screenshot(path=str(SHOTS / "console-approvals.png"), full_page=True)

    card.locator("button[value=approve]").click()
    page.wait_for_selector("text=Nothing is waiting for you")
    result = household.fridge.wait_for_result(order_id, timeout_s=15)
    assert (result.status, result.reason) == ("approved", None)
    assert "approved" in page.locator(".notice").inner_text()
    page.screenshot(path=str(SHOTS / "console-approvals-decided.png"), full_page=True)
    assert errors == []


def test_a_wrong_rules_value_shows_the_message_in_the_browser(
    browser: Any, household: Household
) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(_sign_in_link(household))  # as `kym demo` prints it
    page.wait_for_url(f"{household.base}/console")
    assert page.locator("text=Waiting for your approval").is_visible()
    for name in ("devices", "wallets", "payments", "freeze"):
        page.goto(f"{household.base}/console/{name}")
        page.screenshot(path=str(SHOTS / f"console-{name}.png"), full_page=True)
    page.goto(f"{household.base}/console/devices")
    page.once("dialog", lambda dialog: dialog.dismiss())  # the owner thinks better of it
    page.click("button[value=revoke]")
    assert page.locator(".status").first.inner_text().lower() == "active"
    page.click("text=Rules and limits")
    page.screenshot(path=str(SHOTS / "console-device.png"), full_page=True)
    page.fill("#f-approval_ttl_seconds", "0")
    page.click("text=Save rules")
    message = page.locator("#e-approval_ttl_seconds")
    message.wait_for()
    assert message.inner_text() == "Input should be greater than or equal to 1"
    assert page.get_attribute("#f-approval_ttl_seconds", "aria-invalid") == "true"
    page.locator("#rules").screenshot(path=str(SHOTS / "console-rules-error.png"))
    phone = phone_of(browser, page)
    url = f"{household.base}/console/devices"
    fits_a_phone(phone, url, "devices", SHOTS / "console-devices-phone.png")


def test_rules_the_owner_leaves_alone_survive_a_save_in_the_browser(
    browser: Any, household: Household
) -> None:
    headers = {"Authorization": f"Bearer {household.owner_key}"}
    with httpx.Client(base_url=household.base, headers=headers, timeout=10) as api:
        device_id = api.get("/v1/devices").json()["items"][0]["id"]
        rules = {
            "currency": "EUR",
            "limits": [{"period": "week", "amount": 8000}, {"period": "week", "amount": 500}],
            "allowed_categories": [],
            "allowed_payees": [household.shop_id],
        }
        assert api.put(f"/v1/devices/{device_id}/rules", json=rules).status_code == 200
        page = browser.new_page(viewport={"width": 1100, "height": 900})
        page.goto(_sign_in_link(household))
        page.wait_for_url(f"{household.base}/console")
        page.goto(f"{household.base}/console/devices/{device_id}")
        assert page.input_value("#f-allowed_categories") == "(none)"
        assert page.input_value("#f-limit_week") == "80.00, 5.00"
        page.fill("#f-max_amount", "90")
        page.click("text=Save rules")
        page.wait_for_selector("text=Rules saved")
        saved = api.get(f"/v1/devices/{device_id}/rules").json()
    assert saved == {**rules, "max_amount": 9000, "approval_ttl_seconds": 300}


def test_names_of_two_hundred_letters_without_a_space_never_push_a_page_sideways(
    browser: Any, household: Household
) -> None:
    """Party names are up to 200 characters and need no space: the console wraps or shortens
    them, on a desktop and on a phone."""
    with httpx.Client(base_url=household.base, timeout=10) as api:
        owner = _post(api, "/v1/owners", {"name": "W" * 200, "timezone": "Asia/Kolkata"})
        maker = _post(api, "/v1/integrators", {"name": "I" * 200})
        _, csr = make_openssl_csr(household.data_dir.parent, "long")
        device = {
            "owner_id": owner["id"], "kind": "ev_charger", "manufacturer": "X" * 200,
            "model": "Y" * 200, "serial_number": "L-1", "csr": csr, "currency": "JPY",
        }  # fmt: skip
        registered = _post(api, "/v1/devices", device, maker["api_key"])
        device_id, key = registered["id"], owner["api_key"]
        _post(api, f"/v1/devices/{device_id}/approve", {}, key)
        top_up = {"amount": 1050, "currency": "JPY", "idempotency_key": "seed"}
        _post(api, f"/v1/devices/{device_id}/wallet/top-ups", top_up, key)
    page, errors = signed_in_page(browser, household.base, key)
    phone = phone_of(browser, page)
    for path in ("", "/devices", f"/devices/{device_id}", "/wallets", "/audit", "/payments"):
        page.goto(f"{household.base}/console{path}")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 1100, f"/console{path} scrolls sideways at 1100 px: {width}"
        shot = SHOTS / f"console-long-names{path.replace('/', '-')[:20]}.png"
        fits_a_phone(phone, f"{household.base}/console{path}", f"/console{path}", shot)
    assert page.get_attribute(".who", "title") == f"{'W' * 200}: signed in as owner {owner['id']}"
    assert errors == []


def test_an_owner_signs_in_with_the_keyboard_alone_after_a_wrong_key(
    browser: Any, household: Household
) -> None:
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    page.goto(f"{household.base}/console")
    page.keyboard.type("kym_not-a-key")  # no click: the key field has the focus
    page.keyboard.press("Enter")
    page.wait_for_selector("text=That is not an owner's API key")
    page.keyboard.type(household.owner_key)  # and has it again after the refusal
    page.keyboard.press("Enter")
    page.wait_for_url(f"{household.base}/console")
    assert page.locator("text=Waiting for your approval").is_visible()


def test_every_page_of_the_console_is_in_reach_of_its_menu(
    browser: Any, household: Household
) -> None:
    page, errors = signed_in_page(browser, household.base, household.owner_key)
    links = page.locator("nav a")
    assert links.count() == 10
    for i in range(links.count()):
        box = links.nth(i).bounding_box()
        assert box and box["x"] + box["width"] <= 1100, links.nth(i).inner_text()  # not cut
    page.click("nav >> text=Activity")
    page.wait_for_selector("h1:has-text('Activity')")
    assert errors == []
