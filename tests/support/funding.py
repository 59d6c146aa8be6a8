"""Funding as the funding tests set it up: sources, their top-ups, and more devices of one owner."""

from __future__ import annotations

from typing import Any

import httpx
from cryptography.hazmat.primitives import serialization

from devices import wire
from gateway.db import Database
from tests.support.openssl import make_openssl_csr
from tests.support.services import postgres_schema_url
from tests.support.world import Dev, World


def source(world: World, owner: dict[str, str], **body: Any) -> dict[str, Any]:
    """Create a funding source (201) and return it."""
    body = {"name": "everyday", "kind": "balance", "currency": "EUR", **body}
    response = world.api.post("/v1/owners/me/funding-sources", headers=owner, json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def migrated_postgres_url(postgres_database: str) -> str:
    """A fresh schema of the PostgreSQL test database, migrated; its URL (for a module whose
    races only PostgreSQL can show: SQLite serialises writers)."""
    url = postgres_schema_url(postgres_database)
    db = Database(url)
    db.migrate()
    db.dispose()
    return url


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


def savings_and_policy(
    base: str, owner_key: str, policy: dict[str, Any], top_up: int = 0, **line: Any
) -> dict[str, Any]:
    """Over HTTP against a served gateway at `base`: a savings account (floor 20.00, topped up by
    `top_up` if any) and a credit line of 1,000.00 (with `line`'s terms), with an instalment
    policy on that line for pays of 50.00 to 600.00 every 30 days (and `policy`'s counts and
    keep_at_least); the savings account."""
    owner = {"Authorization": f"Bearer {owner_key}"}
    with httpx.Client(base_url=base, headers=owner, timeout=10) as api:
        savings = {"name": "Savings account", "kind": "balance", "currency": "EUR", "floor": 2000}
        made = api.post("/v1/owners/me/funding-sources", json=savings)
        assert made.status_code == 201, made.text
        if top_up:
            money = {"amount": top_up, "currency": "EUR", "idempotency_key": "salary"}
            url = f"/v1/funding-sources/{made.json()['id']}/top-ups"
            assert api.post(url, json=money).is_success
        card = {"name": "Household card", "kind": "credit_line", "currency": "EUR"}
        created = api.post(
            "/v1/owners/me/funding-sources", json={**card, "credit_limit": 100_000, **line}
        )
        assert created.status_code == 201, created.text
        terms = {"source": created.json()["id"], "min_amount": 5000, "max_amount": 60_000}
        terms |= {"interval_days": 30, **policy}
        assert api.put("/v1/owners/me/instalment-policy", json=terms).status_code == 200
    return dict(made.json())
