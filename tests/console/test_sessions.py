"""Signing in to the console: the cookie, who may sign in, and sign-ins from other sites."""

from __future__ import annotations

import hashlib
from http.cookies import SimpleCookie

from fastapi.testclient import TestClient
from sqlalchemy import select

from gateway.console.sessions import console_sessions
from gateway.context import Context
from gateway.http.app import create_app
from tests.support.console import sign_in
from tests.support.world import ADMIN, World, bearer


def _set_cookie(answer: object) -> SimpleCookie:
    cookie: SimpleCookie = SimpleCookie()
    cookie.load(answer.headers["set-cookie"])  # type: ignore[attr-defined]
    return cookie


def test_an_owner_key_opens_a_session_whose_cookie_holds_nothing_of_the_key(
    world: World, browser_like: TestClient
) -> None:
    owner = world.party("owners", {"name": "Ada", "timezone": "UTC"})
    answer = browser_like.post("/console/session", data={"api_key": owner["api_key"]})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console"
    header = answer.headers["set-cookie"].lower()
    assert "httponly" in header and "samesite=strict" in header
    assert "secure" not in header.replace("samesite", "")  # plain HTTP: not Secure
    value = _set_cookie(answer)["kym_console"].value
    key = owner["api_key"]
    assert key not in value and key[4:20] not in value
    assert hashlib.sha256(key.encode()).hexdigest() not in value
    assert len(value) >= 40  # 256 random bits
    page = browser_like.get("/console")
    assert page.status_code == 200 and "Waiting for your approval" in page.text
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    assert page.headers["x-frame-options"] == "DENY"
    assert page.headers["cache-control"] == "no-store"


def test_the_cookie_is_secure_over_https(world: World, ctx: Context) -> None:
    owner = world.party("owners", {"name": "Ada", "timezone": "UTC"})
    client = TestClient(create_app(ctx), base_url="https://testserver", follow_redirects=False)
    answer = client.post("/console/session", data={"api_key": owner["api_key"]})
    assert answer.status_code == 303
    assert _set_cookie(answer)["kym_console"]["secure"]


def test_a_wrong_key_or_another_partys_key_gets_the_sign_in_page_with_401(
    world: World, browser_like: TestClient
) -> None:
    merchant = world.merchant()
    integrator = world.party("integrators", {"name": "ACME"})
    admin_token = ADMIN["Authorization"].removeprefix("Bearer ")
    for key in ("kym_wrong", "", merchant["api_key"], integrator["api_key"], admin_token):
        answer = browser_like.post("/console/session", data={"api_key": key})
        assert answer.status_code == 401, key
        assert 'name="api_key"' in answer.text
        assert "set-cookie" not in answer.headers


def test_a_sign_in_sent_by_another_site_is_refused(world: World, browser_like: TestClient) -> None:
    owner = world.party("owners", {"name": "Ada", "timezone": "UTC"})
    for headers in (
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ):
        answer = browser_like.post(
            "/console/session", data={"api_key": owner["api_key"]}, headers=headers
        )
        assert answer.status_code == 403, headers
        assert "set-cookie" not in answer.headers
    same = {"Origin": "http://testserver", "Sec-Fetch-Site": "same-origin"}
    assert sign_in(browser_like, owner["api_key"], **same)


def test_without_a_session_pages_send_to_the_sign_in_page(browser_like: TestClient) -> None:
    assert 'name="api_key"' in browser_like.get("/console").text
    for path in ("/console/devices", "/console/wallets", "/console/payments", "/console/freeze"):
        answer = browser_like.get(path)
        assert answer.status_code == 303, path
        assert answer.headers["location"] == f"/console?next=%2Fconsole%2F{path[9:]}", path
    answer = browser_like.get("/console/approvals/pending", headers={"HX-Request": "true"})
    assert answer.status_code == 401 and answer.headers["hx-redirect"] == "/console"
    browser_like.cookies.set("kym_console", "made-up")
    assert browser_like.get("/console/devices").status_code == 303


def test_deleting_the_key_ends_the_session_in_every_worker(
    world: World, ctx: Context, browser_like: TestClient
) -> None:
    owner = world.party("owners", {"name": "Ada", "timezone": "UTC"})
    second = world.api.post("/v1/keys", headers=bearer(owner["api_key"]))
    assert second.status_code == 201, second.text
    sign_in(browser_like, owner["api_key"])
    other_worker = TestClient(create_app(ctx), follow_redirects=False)  # shares only the database
    other_worker.cookies.set("kym_console", browser_like.cookies["kym_console"])
    assert other_worker.get("/console/devices").status_code == 200
    keys = world.api.get("/v1/keys", headers=bearer(second.json()["api_key"])).json()["items"]
    first = next(k for k in keys if owner["api_key"].startswith(k["prefix"]))
    deleted = world.api.delete(f"/v1/keys/{first['id']}", headers=bearer(second.json()["api_key"]))
    assert deleted.status_code == 204, deleted.text
    assert browser_like.get("/console/devices").status_code == 303
    assert other_worker.get("/console/devices").status_code == 303
    with ctx.db.read() as conn:  # the foreign key's cascade removed the row itself
        rows = conn.execute(
            select(console_sessions).where(console_sessions.c.key_id == first["id"])
        )
        assert rows.all() == []


def test_signing_out_ends_the_session(world: World, browser_like: TestClient) -> None:
    owner = world.party("owners", {"name": "Ada", "timezone": "UTC"})
    csrf = sign_in(browser_like, owner["api_key"])
    cookie = browser_like.cookies["kym_console"]
    assert browser_like.post("/console/sign-out", data={"csrf_token": csrf}).status_code == 303
    browser_like.cookies.set("kym_console", cookie)  # a copy kept by an attacker
    assert browser_like.get("/console/devices").status_code == 303


def test_the_cookie_is_not_accepted_by_the_api(world: World, browser_like: TestClient) -> None:
    owner = world.party("owners", {"name": "Ada", "timezone": "UTC"})
    sign_in(browser_like, owner["api_key"])
    for path in ("/v1/approvals", "/v1/keys"):
        assert browser_like.get(path).status_code == 401, path


def test_a_sign_in_link_opens_one_session_once(
    world: World, ctx: Context, browser_like: TestClient
) -> None:
    from gateway.console import sign_in_link

    owner = world.party("owners", {"name": "Ada", "timezone": "UTC"})
    assert sign_in_link(ctx, world.merchant()["api_key"], "http://testserver") is None
    link = sign_in_link(ctx, owner["api_key"], "http://testserver/")
    assert link is not None and link.startswith("http://testserver/console/link#")
    token = link.split("#", 1)[1]  # a fragment: the browser never sends it, no log records it
    assert 'id="link-form"' in browser_like.get("/console/link").text
    browser_like.cookies.set("kym_console", token)  # the link is no session
    assert browser_like.get("/console/devices").status_code == 303
    browser_like.cookies.clear()
    cross = {"Sec-Fetch-Site": "cross-site"}
    refused = browser_like.post("/console/session/link", data={"token": token}, headers=cross)
    assert refused.status_code == 403
    answer = browser_like.post("/console/session/link", data={"token": token})
    assert answer.status_code == 303 and "httponly" in answer.headers["set-cookie"].lower()
    assert _set_cookie(answer)["kym_console"].value != token
    assert browser_like.get("/console/devices").status_code == 200
    other_browser = TestClient(create_app(ctx), follow_redirects=False)
    again = other_browser.post("/console/session/link", data={"token": token})
    assert again.status_code == 401
