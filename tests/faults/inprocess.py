"""A gateway's parts in the test's process: a broker (Mosquitto or the embedded one), the HTTP
API for registering devices, and gateway MQTT clients made on demand, for tests that run the
real `Worker` themselves (tests/faults/test_acknowledgement.py, test_undecidable.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import replace
from pathlib import Path
from typing import Literal

from fastapi.testclient import TestClient

from devices import keystore
from gateway.context import utcnow
from gateway.http.app import create_app
from gateway.mqtt.client import GatewayClient
from gateway.server import build_context, free_port, start_broker
from gateway.settings import Settings
from tests.support.gateway import ADMIN_TOKEN
from tests.support.stack import Stack


class Gateway:
    """A broker, an HTTP API for registering devices, and gateway clients made on demand."""

    def __init__(self, stack: Stack, exits: ExitStack) -> None:
        self.stack, self.exits = stack, exits

    def client(self, n: int = 0) -> GatewayClient:
        ctx = self.stack.ctx
        cert, key = keystore.ensure_gateway_client_identity(ctx.pki, n, utcnow())
        client = GatewayClient(
            "127.0.0.1", self.stack.port, f"kym-gateway-{n}", cert, key, ctx.pki.paths.bundle
        )
        client.start()
        assert client.subscribed.wait(10), "the gateway client did not subscribe"
        return client


def serve_gateway(
    tmp_path: Path, database_url: str, broker: Literal["mosquitto", "embedded"]
) -> Iterator[Gateway]:
    port = free_port()
    settings = Settings(
        data_dir=tmp_path / "data", database_url=database_url,
        admin_token=ADMIN_TOKEN, mqtt=f"127.0.0.1:{port}", broker=broker,
    )  # fmt: skip
    base = build_context(settings)
    with ExitStack() as exits:
        ctx = replace(base, broker=start_broker(base, exits))
        with TestClient(create_app(ctx)) as api:
            yield Gateway(Stack(ctx, api, port, tmp_path), exits)
        ctx.db.dispose()
