"""Signing in again (the session ended, or the owner signed out) leads back to the console page
that was asked for, on the real app; never anywhere outside the console."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from gateway.console.auth import return_path
from tests.support.console import sign_in
from tests.support.world import World

NEXT = re.compile(r'<input type="hidden" name="next" value="([^"]*)">')
HOSTILE = [
    "https://evil.example/console",
    "//evil.example/console",
    "/\\evil.example",
    "\\\\evil.example/console",
    "javascript:alert(1)",
    "/consolex/evil",
    "/v1/devices",
    "/console/../v1/devices",
    "/console/%2e%2e/metrics",
    "/console//evil.example",
    "evil.example",
]


def _owner_key(world: World) -> str:
    return str(world.party("owners", {"name": "Ada", "timezone": "UTC"})["api_key"])


@pytest.mark.parametrize(
    ("asked", "location"),
    [
        ("/console/wallets", "/console?next=%2Fconsole%2Fwallets"),
        (
            "/console/disputes?payment=pay_1",
            "/console?next=%2Fconsole%2Fdisputes%3Fpayment%3Dpay_1",
        ),
    ],
)
def test_signing_in_after_the_session_ended_returns_to_the_page_asked_for(
    world: World, browser_like: TestClient, asked: str, location: str
) -> None:
    key = _owner_key(world)
    csrf = sign_in(browser_like, key)
    assert browser_like.post("/console/sign-out", data={"csrf_token": csrf}).status_code == 303
    sent = browser_like.get(asked)
    assert sent.status_code == 303 and sent.headers["location"] == location
    page = browser_like.get(location)
    assert page.status_code == 200 and 'name="api_key"' in page.text
    shown = NEXT.search(page.text)
    assert shown and shown.group(1).replace("&amp;", "&") == asked
    signed_in = browser_like.post("/console/session", data={"api_key": key, "next": asked})
    assert signed_in.status_code == 303 and signed_in.headers["location"] == asked
    there = browser_like.get(asked)  # signed in there (pay_1 is no payment of theirs: 404)
    assert there.status_code in (200, 404) and 'name="api_key"' not in there.text


def test_an_ended_session_sends_to_sign_in_and_back_the_same_way(
    world: World, browser_like: TestClient
) -> None:
    key = _owner_key(world)
    browser_like.cookies.set("kym_console", "a-session-that-has-ended")
    sent = browser_like.get("/console/devices")
    assert sent.headers["location"] == "/console?next=%2Fconsole%2Fdevices"
    wrong = browser_like.post(
        "/console/session", data={"api_key": "kym_wrong", "next": "/console/devices"}
    )
    assert wrong.status_code == 401  # the next try still leads there
    shown = NEXT.search(wrong.text)
    assert shown and shown.group(1) == "/console/devices"
    right = browser_like.post("/console/session", data={"api_key": key, "next": "/console/devices"})
    assert right.headers["location"] == "/console/devices"


def test_a_form_sent_after_the_session_ended_leads_back_to_its_page(
    world: World, browser_like: TestClient
) -> None:
    browser_like.cookies.set("kym_console", "ended")
    host = "http://testserver"
    sent = browser_like.post(
        "/console/freeze",
        data={"action": "freeze", "csrf_token": "x"},
        headers={"Referer": f"{host}/console/freeze"},
    )
    assert sent.status_code == 401 and "Your session has ended" in sent.text
    shown = NEXT.search(sent.text)
    assert shown and shown.group(1) == "/console/freeze"
    foreign = browser_like.post(
        "/console/freeze",
        data={"action": "freeze"},
        headers={"Referer": "http://evil.example/console/freeze"},
    )
    assert foreign.status_code == 401 and NEXT.search(foreign.text) is None
    inbox = browser_like.get(
        "/console/approvals/pending",
        headers={"HX-Request": "true", "HX-Current-URL": f"{host}/console/wallets"},
    )
    assert inbox.status_code == 401
    assert inbox.headers["hx-redirect"] == "/console?next=%2Fconsole%2Fwallets"


@pytest.mark.parametrize(
    ("was_on", "back_to"),
    [
        ("/console/devices/dev_1/rules", "/console/devices/dev_1"),
        ("/console/devices/dev_1/mandates", "/console/devices/dev_1"),
        ("/console/devices/dev_1/top-ups", "/console/wallets"),
        ("/console/instalment-policy", "/console/funding"),
        ("/console/funding-sources/fs_1/top-ups", "/console/funding"),
        ("/console/payments/pay_1/disputes", "/console/disputes?payment=pay_1"),
        ("/console/disputes/dsp_1/response", "/console/disputes"),
        ("/console/approvals/apr_1", "/console"),
        ("/console/freeze", "/console/freeze"),
    ],
)
def test_a_form_sent_from_a_forms_answer_leads_back_to_the_page_that_shows_it(
    world: World, browser_like: TestClient, was_on: str, back_to: str
) -> None:
    """A form's answer is shown at the form's POST-only address; signing in again after a form
    sent from there opens the page with that form, never a 405."""
    browser_like.cookies.set("kym_console", "ended")
    sent = browser_like.post(
        "/console/freeze",
        data={"csrf_token": "x"},
        headers={"Referer": f"http://testserver{was_on}"},
    )
    assert sent.status_code == 401
    shown = NEXT.search(sent.text)  # none for the console's home, where signing in leads anyway
    assert (shown.group(1).replace("&amp;", "&") if shown else "/console") == back_to
    key = _owner_key(world)
    signed_in = browser_like.post("/console/session", data={"api_key": key, "next": back_to})
    assert signed_in.headers["location"] == back_to
    assert browser_like.get(back_to).status_code in (200, 404)  # pay_1 is nobody's: 404


@pytest.mark.parametrize("hostile", HOSTILE)
def test_signing_in_never_leads_outside_the_console(
    world: World, browser_like: TestClient, hostile: str
) -> None:
    key = _owner_key(world)
    page = browser_like.get("/console", params={"next": hostile})
    assert page.status_code == 200 and NEXT.search(page.text) is None
    signed_in = browser_like.post("/console/session", data={"api_key": key, "next": hostile})
    assert signed_in.status_code == 303 and signed_in.headers["location"] == "/console"
    again = browser_like.get("/console", params={"next": hostile})  # signed in: no redirect
    assert again.status_code == 200 and "Waiting for your approval" in again.text


def test_a_signed_in_owner_following_a_sign_in_link_goes_straight_to_the_page(
    world: World, browser_like: TestClient
) -> None:
    sign_in(browser_like, _owner_key(world))
    answer = browser_like.get("/console", params={"next": "/console/funding"})
    assert answer.status_code == 303 and answer.headers["location"] == "/console/funding"


@pytest.mark.parametrize(
    "target",
    [
        "/console",
        "/console/wallets",
        "/console/devices/dev_1",
        "/console/disputes?payment=pay_1",
        "/console/audit?device=dev_1&cursor=abc",
    ],
)
def test_signing_in_returns_to_a_page_of_the_console(target: str) -> None:
    assert return_path(target) == target


@pytest.mark.parametrize(
    "target",
    [
        None,
        "",
        "https://evil.example/console",
        "//evil.example/console",
        "///evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "/console\\..\\v1",
        "/console/%5C%5Cevil.example",
        "javascript:alert(1)",
        "javascript:/console",
        "http:/console",
        "/consolex",
        "/console.evil.example",
        "/console@evil.example",
        "/v1/devices",
        "/",
        "console/wallets",
        "/console/../v1/devices",
        "/console/%2e%2e/metrics",
        "/console//evil.example",
        "/console/wallets#frag",
        "/console/wallets\r\nSet-Cookie: x=1",
        "/console/wallets\t",
        "/console/wa llets",
        "/console/wällets",
        "/console/" + "a" * 2000,
    ],
)
def test_no_path_outside_the_console_is_returned_to(target: str | None) -> None:
    assert return_path(target) == "/console"
