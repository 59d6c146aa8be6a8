"""SIGKILL of `kym serve` in the middle of a burst of keyed top-ups over HTTP (contract section
4 and 8): a client whose answers are lost retries every key once the gateway is back, and each
key moves money exactly once, answers its first answer again, and the books still check."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from devices.sdk import GatewayApi, Registration, provision
from tests.faults.fleet import _post
from tests.faults.processes import Gateway, kym

pytestmark = [pytest.mark.slow, pytest.mark.mosquitto]
KEYS = 160
KILL_AFTER = 40  # answers received before the SIGKILL: the rest are in flight or not yet sent


def _targets(url: str, state_root: Path) -> tuple[dict[str, str], str, str]:
    """An owner's headers, their approved device and a balance source of theirs."""
    integrator = _post(url, "/v1/integrators", None, {"name": "ACME"})
    owner = _post(url, "/v1/owners", None, {"name": "owner", "timezone": "UTC"})
    registration = Registration(owner["id"], "car", "ACME", "M1", "SN-top-up-kill")
    with GatewayApi(url, integrator["api_key"]) as api:
        device = provision(state_root / "dev", api, registration).device_id
    body = {"name": "savings", "kind": "balance", "currency": "EUR"}
    source = _post(url, "/v1/owners/me/funding-sources", owner["api_key"], body)
    return {"Authorization": f"Bearer {owner['api_key']}"}, device, str(source["id"])


def _burst(
    url: str, headers: dict[str, str], paths: list[str], kill: Gateway | None = None
) -> dict[tuple[str, int], tuple[int, Any]]:
    """POST top-up n (amount n + 1, key k-n) to each path from 8 threads; the answers that
    arrived, by (path, n). With `kill`, SIGKILLs that gateway once KILL_AFTER have arrived."""
    answers: dict[tuple[str, int], tuple[int, Any]] = {}
    lock = threading.Lock()
    killer = threading.Thread(target=lambda: kill.kill() if kill else None)

    def send(path: str, n: int) -> None:
        body = {"amount": n + 1, "currency": "EUR", "idempotency_key": f"k-{n}"}
        try:
            answer = httpx.post(f"{url}{path}", json=body, headers=headers, timeout=30)
        except httpx.HTTPError:
            return  # the answer is lost: the client retries later
        with lock:
            answers[(path, n)] = (answer.status_code, answer.json())
            if kill is not None and len(answers) == KILL_AFTER:
                killer.start()

    with ThreadPoolExecutor(8) as pool:
        for n in range(KEYS):
            for path in paths:
                pool.submit(send, path, n)
    if killer.is_alive():
        killer.join(30)
    return answers


def test_top_ups_retried_after_a_sigkill_move_money_once_per_key(
    database: str, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    gateway = Gateway(data, database)
    try:
        gateway.start()
        gateway.wait_healthy()
        headers, device, source = _targets(gateway.url, tmp_path)
        paths = [f"/v1/devices/{device}/wallet/top-ups", f"/v1/funding-sources/{source}/top-ups"]
        before = _burst(gateway.url, headers, paths, kill=gateway)
        assert KILL_AFTER <= len(before) < KEYS * len(paths), len(before)  # killed mid-burst
        assert all(status == 201 for status, _ in before.values()), before
        gateway.start()
        gateway.wait_healthy()
        after = _burst(gateway.url, headers, paths)
        assert len(after) == KEYS * len(paths)
        assert all(status == 201 for status, _ in after.values()), after
        for key, first in before.items():  # the first answer again, not a second top-up
            assert after[key] == first, key
        expected = sum(range(1, KEYS + 1))
        wallet = httpx.get(f"{gateway.url}/v1/devices/{device}/wallet", headers=headers)
        assert wallet.json()["balance"] == expected, wallet.json()
        sources = httpx.get(f"{gateway.url}/v1/owners/me/funding-sources", headers=headers)
        assert sources.json()["items"][0]["balance"] == expected, sources.json()
    finally:
        gateway.stop()
    for command in ("ledger", "check"), ("audit", "verify"):
        done = kym(*command, "--data-dir", str(data), "--database-url", database)
        assert done.returncode == 0, f"kym {' '.join(command)}: {done.stdout}{done.stderr}"
