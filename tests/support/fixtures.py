"""Fixtures that several test directories share, registered by `pytest_plugins` in
tests/conftest.py: a gateway with a real broker (`stack`, `gateway`) and its API over real HTTP
(`http`, `live`)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from gateway.http.app import create_app
from gateway.server import (
    free_port,
)
from tests.support.stack import BROKERS, Http, Stack, run_stack


@pytest.fixture(params=BROKERS)
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    """A gateway's broker and MQTT client on a free port, orders left in `gateway_inbox`."""
    yield from run_stack(request, tmp_path, pipeline=False)


@pytest.fixture(params=BROKERS)
def gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    """The whole gateway: broker, MQTT workers deciding orders, housekeeper, HTTP API."""
    yield from run_stack(request, tmp_path, pipeline=True)


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
