"""A flood of junk from one valid device, through the whole gateway and a real broker (the
managed Mosquitto and the embedded broker), against CONTRACT.md section 10: orders beyond a
device's rate (10 a second, bursts of 50, by default) are not decided, not recorded and get at
most one `rejected`/`rate_limited` result a second; other devices keep being served; a device
that goes on far beyond its rate is disconnected by the broker; and the flooder is served again
once it reconnects and its rate allows."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.orders import Payer
from tests.support.scene import Scene
from tests.support.stack import BROKERS, Stack, run_stack

FLOOD = 2_000
RATE_PER_S, BURST = 10, 50  # the contract's defaults


@pytest.fixture(scope="module", params=BROKERS)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    yield from run_stack(request, tmp_path_factory.mktemp("flood"), pipeline=True)


@pytest.fixture
def scene(live: Stack) -> Iterator[Scene]:
    made = Scene(live)
    yield made
    made.close()


def audit_entries(scene: Scene, payer: Payer) -> int:
    """How many audit entries the owner sees for the device (every page)."""
    headers = {"Authorization": f"Bearer {payer.device.owner_key}"}
    count, cursor = 0, None
    while True:
        query = f"?limit=200&cursor={cursor}" if cursor else "?limit=200"
        page = scene.stack.api.get(f"/v1/devices/{payer.id}/audit{query}", headers=headers).json()
        count += len(page["items"])
        cursor = page.get("next_cursor")
        if not cursor:
            return count


def _rejections(payer: Payer) -> list[dict[str, Any]]:
    return [m for m in payer.messages() if m.get("status") == "rejected"]


def test_a_flood_is_rate_limited_and_other_devices_are_served(scene: Scene) -> None:
    audited = audit_entries(scene, scene.attacker)
    topic = f"kym/v1/devices/{scene.attacker.id}/orders"
    started = time.monotonic()
    for i in range(FLOOD):
        scene.attacker.session.client.publish(topic, b"junk %d" % i, qos=0)
    asked = time.monotonic()
    served = scene.victim.send(scene.pay(scene.victim, 5))
    latency_s = time.monotonic() - asked
    assert served is not None and served["status"] == "approved", served
    assert latency_s < 5, f"another device waited {latency_s:.2f} s during the flood"
    time.sleep(2)  # let the gateway take the rest of the flood
    elapsed_s = time.monotonic() - started
    decided = BURST + RATE_PER_S * elapsed_s  # what the rate lets through, at most
    rejections = _rejections(scene.attacker)
    limited = [m for m in rejections if m["reason"] == "rate_limited"]
    assert len(limited) <= elapsed_s + 1, f"{len(limited)} rate_limited in {elapsed_s:.1f} s"
    assert len(rejections) - len(limited) <= decided, f"{len(rejections)} answers to a flood"
    assert audit_entries(scene, scene.attacker) - audited <= decided
    assert scene.attacker.session.disconnected.is_set(), "the broker let the flood go on"
    time.sleep(BURST / RATE_PER_S)  # the bucket fills again
    scene.attacker.close()  # paho's reconnecting would take the client id back from a new one
    scene.attacker = Payer.connect(scene.attacker.device)  # a clean session: subscribe again
    again = scene.attacker.send(scene.pay(scene.attacker, 5))
    assert again is not None and again["status"] == "approved", again
