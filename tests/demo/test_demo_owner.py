"""`kym demo`'s owner side, in a real process: the printed console link signs the demo's owner
in from a real headless Chromium while the demo runs, and the owners decide approvals from
their event streams, never by polling (the gateway's own access log, `kym -v demo`, says so).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.support.browser import launched_chromium
from tests.support.demo import assert_tells_the_whole_story

pytestmark = pytest.mark.slow
LINK = re.compile(r"^(http://127\.0\.0\.1:\d+)/console/link#(\S+)$")


@pytest.fixture
def browser() -> Iterator[Any]:
    with launched_chromium() as launched:
        yield launched


def read_until_link(stdout: IO[str], seen: list[str]) -> str:
    """The demo's lines up to the console link (kept in `seen`); the link."""
    for line in stdout:
        seen.append(line)
        if LINK.match(line.strip()):
            return line.strip()
    raise AssertionError("no console link in the demo's output:\n" + "".join(seen))


def sign_in_in_the_browser(browser: Any, link: str) -> str:
    """Open the link as a person would; the signed-in page's text."""
    page = browser.new_page()
    try:
        page.goto(link)
        page.wait_for_url(re.compile(r"/console$"), timeout=15_000)
        page.wait_for_selector("form.signout", timeout=15_000)
        assert "#" not in page.url  # the page forgets the token once it has posted it
        cookies = {c["name"]: c for c in page.context.cookies()}
        [session] = [c for c in cookies.values() if c["httpOnly"]]
        assert session["sameSite"] == "Strict"
        return str(page.inner_text("body"))
    finally:
        page.close()


def test_kym_demo_prints_a_working_console_link_and_decides_approvals_from_events(
    tmp_path: Path, browser: Any
) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("KYM_") and k != "PYTHONPATH"}
    env["COLUMNS"] = "160"
    log = tmp_path / "stderr.log"
    command = [sys.executable, "-m", "gateway.cli", "-v", "demo", "--duration", "20"]
    with log.open("w") as stderr:
        demo = subprocess.Popen(
            command, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
        try:
            assert demo.stdout is not None
            seen: list[str] = []
            link = read_until_link(demo.stdout, seen)
            assert "Owner console (owner of car-0, fridge-0, meter-0):" in "".join(seen)
            body = sign_in_in_the_browser(browser, link)
            base, token = LINK.match(link).groups()  # type: ignore[union-attr]
            again = httpx.post(f"{base}/console/session/link", data={"token": token})
            rest, _ = demo.communicate(timeout=150)
        finally:
            if demo.poll() is None:
                demo.kill()
                demo.wait()
    output = "".join(seen) + rest
    assert demo.returncode == 0, f"{output}\n{log.read_text()[-5000:]}"
    assert "Sign out" in body and "household 0" in body and "Approvals" in body, body
    assert again.status_code == 401 and "expired or was used already" in again.text
    assert_tells_the_whole_story(output)
    assert_decided_from_events(output, log.read_text())


def assert_decided_from_events(output: str, access_log: str) -> None:
    """Every decision followed an approval.pending event; nobody asked for the approvals."""
    decided = re.search(r"the owners approved (\d+) and declined (\d+) orders", output)
    streams = re.search(
        r"approvals decided from the owners' event streams: (\d+) approval\.pending events "
        r"over (\d+) connections, no polling",
        output,
    )
    assert decided and streams, output
    decisions = int(decided[1]) + int(decided[2])
    assert decisions >= 2 and int(streams[1]) >= decisions
    requests = re.findall(r'"([A-Z]+) (/[^ ?"]*)\S* HTTP/1\.1" (\d+)', access_log)
    assert len(requests) > 50, access_log[-3000:]  # the access log is there
    assert not [r for r in requests if r[0] == "GET" and r[1].startswith("/v1/approvals")]
    posted = [r for r in requests if r[0] == "POST" and r[1].startswith("/v1/approvals/")]
    assert len([r for r in posted if r[2] == "200"]) == decisions  # a 409 is not counted
    opened = [r for r in requests if r[:2] == ("GET", "/v1/events/stream")]
    # One per owner of a paying device, and the browser's inbox follows its owner's too.
    assert len(opened) >= int(streams[2]) >= 3
