"""What every `kym bench` load shares: what to send, who registers and pays, and how a paying
device is registered (through the API, its own key and certificate) and allowed to pay."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from devices.sdk import KeyType
from simulators.backoffice import Admin, Owner
from simulators.base import provision_device

CURRENCY = "EUR"
FUNDS_MINOR = 10**9


@dataclass(frozen=True)
class Load:
    """What to send: `orders` in all, spread evenly over `devices`."""

    devices: int
    orders: int
    rate: float | None = None  # orders per second; None: as fast as the broker takes them
    key_type: KeyType = "p256"


@dataclass(frozen=True)
class Parties:
    """The bench's owner (who approves, funds and sets rules) and integrator (who registers)."""

    owner_id: str
    owner_key: str
    integrator_key: str


def make_parties(admin: Admin) -> Parties:
    owner = admin.create_owner("bench", timezone="UTC")
    integrator = admin.create_integrator("bench")
    return Parties(owner["id"], owner["api_key"], integrator["api_key"])


def parties_and_shop(
    api_url: str, admin_token: str, parties: Parties | None = None
) -> tuple[Parties, str]:
    """The bench's owner and integrator (`parties`, else new ones) and a new shop's id."""
    admin = Admin(api_url, admin_token)
    try:
        parties = parties or make_parties(admin)
        shop: str = admin.create_merchant("shop", "retail", CURRENCY)["id"]
    finally:
        admin.close()
    return parties, shop


def register_payer(api_url: str, parties: Parties, load: Load, state_dir: Path, n: int) -> Path:
    """Paying device `n`'s state dir, registered once (again: its stored identity)."""
    return provision_device(
        state_dir / f"b{n}",
        api_url,
        parties.integrator_key,
        parties.owner_id,
        "other",
        f"bench-{parties.owner_id}-{n}",  # unique per run: a database may be reused
        manufacturer="bench",
        model="b",
        key_type=load.key_type,
    )


def allow_to_pay(owner: Owner, device_id: str) -> None:
    """Approve the device, fund it and let every payment in CURRENCY through its rules."""
    owner.approve_device(device_id)
    owner.top_up(device_id, FUNDS_MINOR, CURRENCY, "bench")
    owner.set_rules(device_id, {"currency": CURRENCY})
