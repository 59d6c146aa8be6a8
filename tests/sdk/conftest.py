"""The gateway's real API over HTTP (uvicorn on a free port) and its real broker over mTLS.

Devices here are made by the SDK itself: its key, its CSR, its registration through the
integrator's API key, its files in a state dir.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import uvicorn

from devices.sdk import DeviceClient, GatewayApi, Identity, KeyType, Registration, provision
from gateway.http.app import create_app
from gateway.server import free_port
from tests.e2e.conftest import (  # noqa: F401 - the fixtures, reused
    Stack,
    gateway,
    stack,
)


@dataclass
class Http:
    """The API served over real HTTP, next to the in-process `stack.api`."""

    url: str
    stack: Stack

    def party(self, kind: str, name: str, **extra: Any) -> dict[str, Any]:
        body = {"name": name, **extra}
        if kind == "owners":
            body.setdefault("timezone", "Europe/Berlin")
        return self.stack.party(kind, body)

    def provision(
        self, name: str, key_type: KeyType = "p256", *, approve: bool = True, kind: str = "car"
    ) -> tuple[Identity, dict[str, Any]]:
        """A device made by the SDK in `tmp/name`; returns it and its owner."""
        owner = self.party("owners", f"owner of {name}")
        integrator = self.party("integrators", f"maker of {name}")
        registration = Registration(
            owner_id=owner["id"],
            kind=kind,
            manufacturer="ACME",
            model="M1",
            serial_number=f"SN-{name}",
        )
        with GatewayApi(self.url, integrator["api_key"]) as api:
            identity = provision(self.stack.tmp / name, api, registration, key_type)
        if approve:
            answer = self.stack.api.post(
                f"/v1/devices/{identity.device_id}/approve",
                headers={"Authorization": f"Bearer {owner['api_key']}"},
            )
            assert answer.status_code == 200, answer.text
        return identity, owner

    def client(self, identity: Identity, **options: Any) -> DeviceClient:
        return DeviceClient(identity, "127.0.0.1", self.stack.port, **options)


@pytest.fixture
def http(stack: Stack) -> Iterator[Http]:  # noqa: F811 - `stack` is the imported fixture
    """The broker and the API over HTTP; orders stay in `stack.gateway_inbox`, unanswered."""
    yield from _serve(stack)


@pytest.fixture
def live(gateway: Stack) -> Iterator[Http]:  # noqa: F811 - `gateway` is the imported fixture
    """The whole gateway (orders decided, results signed) with its API over HTTP."""
    yield from _serve(gateway)


def _serve(stack: Stack) -> Iterator[Http]:  # noqa: F811
    """uvicorn serving the stack's gateway on a free port."""
    port = free_port()
    config = uvicorn.Config(
        create_app(stack.ctx),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        ws="none",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.02)
    yield Http(f"http://127.0.0.1:{port}", stack)
    server.should_exit = True
    thread.join(10)
