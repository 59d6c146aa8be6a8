"""A gateway with a real broker over mutual TLS, as the end-to-end tests drive it: the stack,
its devices made with the openssl command line, their paho sessions, and its API over real HTTP."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from fastapi.testclient import TestClient

from devices.sdk import DeviceClient, GatewayApi, Identity, KeyType, Registration, provision
from gateway.context import Context
from gateway.http.app import create_app
from gateway.mqtt.workers import Publisher
from gateway.server import (
    build_context,
    free_port,
    start_broker,
    start_gateway_clients,
    start_pipeline,
)
from gateway.settings import Settings
from tests.support.gateway import ADMIN_TOKEN
from tests.support.openssl import make_openssl_csr


@dataclass
class Stack:
    ctx: Context
    api: TestClient
    port: int
    tmp: Path
    gateway_inbox: Any = None
    admin: dict[str, str] = field(
        default_factory=lambda: {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )

    def party(self, kind: str, body: dict[str, Any]) -> dict[str, Any]:
        response = self.api.post(f"/v1/{kind}", json=body, headers=self.admin)
        assert response.status_code == 201, response.text
        return dict(response.json())

    def device(self, name: str, *, approve: bool = True, algorithm: str = "ec") -> Device:
        """Register a device whose key and CSR come from the openssl command line."""
        owner = self.party("owners", {"name": f"owner of {name}", "timezone": "Europe/Berlin"})
        integrator = self.party("integrators", {"name": f"maker of {name}"})
        key_path, csr = make_openssl_csr(self.tmp, name, algorithm)
        body = {
            "owner_id": owner["id"],
            "kind": "car",
            "manufacturer": "ACME",
            "model": "M",
            "serial_number": f"SN-{name}",
            "csr": csr,
        }
        response = self.api.post(
            "/v1/devices", json=body, headers={"Authorization": f"Bearer {integrator['api_key']}"}
        )
        assert response.status_code == 201, response.text
        registered = response.json()
        cert_path = self.tmp / f"{name}.crt"
        cert_path.write_text(registered["certificate"])
        device = Device(
            registered["id"], cert_path, key_path, owner["api_key"], integrator["api_key"], self
        )
        if approve:
            assert device.act("approve").status_code == 200
        return device


@dataclass
class Device:
    id: str
    cert: Path
    key: Path
    owner_key: str
    integrator_key: str
    stack: Stack

    def act(self, action: str) -> Any:
        return self.stack.api.post(
            f"/v1/devices/{self.id}/{action}", headers={"Authorization": f"Bearer {self.owner_key}"}
        )

    def connect(self, client_id: str | None = None, **kwargs: Any) -> Session:
        return Session.open(self.stack, self.cert, self.key, client_id or self.id, **kwargs)


class Session:
    """A paho client over mutual TLS that records what happens to it."""

    def __init__(self, client: mqtt.Client) -> None:
        self.client = client
        self.connected = threading.Event()
        self.disconnected = threading.Event()
        self.refused = threading.Event()
        self.messages: list[tuple[str, bytes]] = []
        self.granted: list[Any] = []
        self.subscribed = threading.Event()

    @classmethod
    def open(
        cls,
        stack: Stack,
        cert: Path | None,
        key: Path | None,
        client_id: str,
        *,
        clean_session: bool = True,
        will: tuple[str, bytes] | None = None,
        wait: bool = True,
    ) -> Session:
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session
        )
        client.tls_set(
            ca_certs=str(stack.ctx.pki.paths.bundle),
            certfile=str(cert) if cert else None,
            keyfile=str(key) if key else None,
            cert_reqs=ssl.CERT_REQUIRED,
        )
        if will:
            client.will_set(will[0], will[1], qos=1)
        session = cls(client)
        client.on_connect = session._on_connect
        client.on_disconnect = lambda *a: session.disconnected.set()
        client.on_message = lambda _c, _u, m: session.messages.append((m.topic, m.payload))
        client.on_subscribe = session._on_subscribe
        try:
            client.connect("127.0.0.1", stack.port, keepalive=10)
        except (ssl.SSLError, OSError):
            session.refused.set()
            return session
        client.loop_start()
        if wait:
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline and not (
                session.connected.is_set() or session.disconnected.is_set()
            ):
                time.sleep(0.01)
        return session

    def _on_connect(self, _c: Any, _u: Any, _f: Any, rc: Any, _p: Any) -> None:
        (self.refused if rc.is_failure else self.connected).set()

    def _on_subscribe(self, _c: Any, _u: Any, _m: Any, codes: list[Any], _p: Any) -> None:
        self.granted = list(codes)
        self.subscribed.set()

    @property
    def is_up(self) -> bool:
        return self.connected.is_set() and not self.disconnected.is_set()

    def subscribe(self, topic: str) -> list[Any]:
        self.subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self.subscribed.wait(5), "no SUBACK"
        return self.granted

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


BROKERS = [pytest.param("mosquitto", marks=pytest.mark.mosquitto), "embedded"]


def run_stack(request: pytest.FixtureRequest, tmp_path: Path, pipeline: bool) -> Iterator[Stack]:
    """A gateway with the broker `request.param` on a free port, for as long as the generator
    runs; with `pipeline`, its MQTT workers decide orders, else they wait in the inbox."""
    if request.param == "mosquitto":
        request.getfixturevalue("mosquitto_binary")
    port = free_port()
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=f"sqlite:///{tmp_path / 'kym.db'}",
        admin_token=ADMIN_TOKEN,
        mqtt=f"127.0.0.1:{port}",
        broker=request.param,
    )
    base = build_context(settings)
    with ExitStack() as stack_:
        broker = start_broker(base, stack_)
        clients = start_gateway_clients(base, stack_)
        assert clients[0].subscribed.wait(10), "the gateway did not subscribe to orders"
        publishers = [Publisher(client) for client in clients]
        ctx = replace(base, broker=broker, publisher=publishers[0] if pipeline else None)
        if pipeline:
            start_pipeline(ctx, clients, publishers, stack_)
        with TestClient(create_app(ctx)) as api:
            yield Stack(ctx, api, port, tmp_path, clients[0].inbox)
        ctx.db.dispose()


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
