"""The owner console as the tests use it: signing in."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def sign_in(client: TestClient, api_key: str, **headers: str) -> str:
    """Sign in and return the console page's CSRF token."""
    answer = client.post("/console/session", data={"api_key": api_key}, headers=headers)
    assert answer.status_code == 303, answer.text
    page = client.get("/console")
    assert page.status_code == 200
    found = CSRF.search(page.text)
    assert found, page.text
    return found.group(1)
