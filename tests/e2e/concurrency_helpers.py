"""Waiting for gateway processes started by tests."""

from __future__ import annotations

import time

import httpx


def wait_healthy(port: int, timeout_s: float = 60) -> None:
    """Until GET /healthz on this port answers 200."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"gateway on {port} never became healthy")
