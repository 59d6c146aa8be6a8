"""A gateway seeded with one of every party and resource, for the authorization tests."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient

from devices import ca
from gateway.orders.intake import KeyRing
from gateway.server import build_context
from gateway.settings import Settings
from tests.support.gateway import ADMIN_TOKEN
from tests.support.world import Dev, World, bearer

# Every kind of caller: the contract's parties, plus the two ways of being nobody.
PARTIES = ("none", "wrong", "admin", "owner", "other_owner", "integrator", "merchant")


WRONG_KEY = "kym_not-a-key-anyone-was-given-0123456789"


@dataclass
class Seeded:
    api: TestClient
    world: World
    headers: dict[str, dict[str, str]]  # party -> Authorization header ({} for "none")
    ids: dict[str, str]  # what the ids name -> the id
    secrets: list[str]  # every key and token handed out while seeding
    csr: str  # a valid CSR (PEM) nobody has registered
    ca_pem: str  # a manufacturer CA certificate (PEM) nobody trusts yet
    devices: dict[str, Dev]  # "alice" (owner A's), "bob" (owner B's)

    @property
    def ctx(self) -> Any:
        return self.world.ctx


def _order(world: World, dev: Dev, **fields: Any) -> dict[str, Any]:
    return dict(dev.send(dev.order(currency="EUR", **fields)))


def _seed(world: World) -> Seeded:
    merchant = world.party("merchants", {"name": "Fuel Co", "category": "fuel"})
    alice = world.device("alice", top_up=100_000, rules={"currency": "EUR", "approval_above": 5000})
    bob = world.device("bob", top_up=1_000)
    api = world.api
    mandate = api.post(
        f"/v1/devices/{alice.id}/mandates",
        json={"payee": merchant["id"], "max_amount": 100},
        headers=alice.owner,
    )
    assert mandate.status_code == 201, mandate.text
    paid = _order(world, alice, type="pay", payee=merchant["id"], amount=500)
    held = _order(world, alice, type="hold", payee=merchant["id"], amount=2000)
    waiting = _order(world, alice, type="pay", payee=merchant["id"], amount=6000)
    assert (paid["status"], held["status"], waiting["status"]) == (
        "approved",
        "approved",
        "pending_approval",
    ), (paid, held, waiting)
    approvals = api.get("/v1/approvals?status=pending", headers=alice.owner).json()["items"]
    admin = bearer(ADMIN_TOKEN)
    headers = {
        "none": {},
        "wrong": bearer(WRONG_KEY),
        "admin": admin,
        "owner": alice.owner,
        "other_owner": bob.owner,
        "integrator": alice.integrator,
        "merchant": bearer(merchant["api_key"]),
    }
    ids = {
        "owner": api.get(f"/v1/devices/{alice.id}", headers=alice.owner).json()["owner_id"],
        "device": alice.id,
        "other_device": bob.id,
        "merchant": merchant["id"],
        "mandate": mandate.json()["id"],
        "payment": paid["payment_id"],
        "hold": held["payment_id"],
        "approval": approvals[0]["id"],
    }
    keys = [h["Authorization"].split(" ", 1)[1] for h in headers.values() if h]
    secrets = [k for k in keys if k != WRONG_KEY]
    devices = {"alice": alice, "bob": bob}
    return Seeded(api, world, headers, ids, secrets, _csr(), _ca_pem(), devices)


def _csr() -> str:
    key = ca.new_private_key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "spare")])
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _ca_pem() -> str:
    root = ca.create_root_ca("Manufacturer Root", datetime.now(UTC), 1)
    return root.certificate.public_bytes(serialization.Encoding.PEM).decode()


@contextmanager
def seeded_gateway(tmp: Path) -> Iterator[Seeded]:
    """A gateway on a fresh data dir and SQLite file, seeded as the module docstring says."""
    from gateway.http.app import create_app

    settings = Settings(
        data_dir=tmp / "data", database_url=f"sqlite:///{tmp / 'kym.db'}", admin_token=ADMIN_TOKEN
    )
    ctx = build_context(settings)
    try:
        with TestClient(create_app(ctx), raise_server_exceptions=False) as api:
            yield _seed(World(ctx, api, tmp, KeyRing()))
    finally:
        ctx.db.dispose()
