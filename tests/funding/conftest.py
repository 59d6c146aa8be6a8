"""Funding on the service layer with a real database (SQLite and PostgreSQL): as tests/service,
with helpers for several devices of one owner and for funding sources."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from fastapi.testclient import TestClient

from devices import wire
from gateway.context import Context
from gateway.orders.intake import KeyRing
from tests.support.openssl import make_openssl_csr
from tests.support.world import Clock, Dev, World, bearer


@pytest.fixture
def ctx(ctx: Context) -> Context:
    """The shared context, with a clock that tests can move forward."""
    return replace(ctx, clock=Clock())


@pytest.fixture
def world(ctx: Context, api: TestClient, tmp_path: Path) -> World:
    return World(ctx, api, tmp_path, KeyRing())


def source(world: World, owner: dict[str, str], **body: Any) -> dict[str, Any]:
    """Create a funding source (201) and return it."""
    body = {"name": "everyday", "kind": "balance", "currency": "EUR", **body}
    response = world.api.post("/v1/owners/me/funding-sources", headers=owner, json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def fund(world: World, owner: dict[str, str], source_id: str, amount: int, key: str) -> Any:
    """Top up a source; the response."""
    return world.api.post(
        f"/v1/funding-sources/{source_id}/top-ups",
        headers=owner,
        json={"amount": amount, "currency": "EUR", "idempotency_key": key},
    )


def sibling(world: World, first: Dev, name: str, *, rules: dict[str, Any]) -> Dev:
    """Another device of `first`'s owner (registered by `first`'s integrator), approved, with
    an empty wallet and these rules."""
    owner_id = world.api.get("/v1/owners/me", headers=first.owner).json()["id"]
    key_path, csr = make_openssl_csr(world.tmp, f"{name}-{owner_id}")
    body = {
        "owner_id": owner_id,
        "kind": "car",
        "manufacturer": "ACME",
        "model": "M",
        "serial_number": f"SN-{name}-{owner_id}",
        "csr": csr,
    }
    registered = world.api.post("/v1/devices", json=body, headers=first.integrator)
    assert registered.status_code == 201, registered.text
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    assert isinstance(key, wire.PrivateKey)
    dev = Dev(world, registered.json()["id"], key, first.owner, first.integrator)
    assert dev.act("approve").status_code == 200
    dev.put_rules(rules)
    return dev


__all__ = ["bearer", "fund", "sibling", "source"]
