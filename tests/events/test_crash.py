"""A crash between a change and its webhook loses nothing: the event is committed with the
change, so a `kym serve` killed with SIGKILL right after the change delivers it once it is back."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
from standardwebhooks.webhooks import Webhook

from gateway.server import free_port
from tests.e2e.serve_helpers import Car
from tests.events.helpers import eventually
from tests.events.receiver import receiver
from tests.support.serve import start


def test_a_change_survives_a_crash_before_its_webhook(tmp_path: Path) -> None:
    data, http, mqtt_port, hook_port = tmp_path / "d", free_port(), free_port(), free_port()
    first = start(tmp_path, data, http, mqtt_port)
    try:
        car = Car(http, tmp_path)
        url = f"http://127.0.0.1:{hook_port}/hook"  # nothing listens there yet
        body = {"url": url, "events": ["device.status_changed"]}
        webhook = car.api.post("/v1/webhooks", json=body, headers=car.owner).json()
        suspended = car.api.post(f"/v1/devices/{car.id}/suspend", headers=car.owner)
        assert suspended.status_code == 200
        first.send_signal(signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
    with receiver(port=hook_port) as hook:
        second = start(tmp_path, data, http, mqtt_port)
        try:
            (got,) = hook.wait_for(1, timeout_s=60)  # at worst the crashed attempt's lease
            log = f"http://127.0.0.1:{http}/v1/webhooks/{webhook['id']}/deliveries"
            delivered = eventually(
                lambda: any(
                    a["delivered"]
                    for a in httpx.get(log, headers=car.owner, timeout=5).json()["items"]
                )
            )
        finally:
            second.send_signal(signal.SIGTERM)
            second.wait(15)
        car.api.close()
    event = Webhook(webhook["secret"]).verify(got.body, got.headers)
    assert event["type"] == "device.status_changed"
    assert event["data"] == {"device_id": car.id, "from": "active", "to": "suspended"}
    assert delivered
