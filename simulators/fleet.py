"""Seed a fleet through the API: parties, devices (each with its own key and certificate),
consent, rules, mandates and money; then connect every device over mutual TLS.

Households of an owner with a car, a fridge and a smart meter; a station operator owning the
pumps and chargers; one merchant per category the devices pay. Rules per kind are in RULES
(with rules set, only `approval_above` asks the owner, and a mandate covers what it names).
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from devices.sdk import DeviceClient
from simulators.backoffice import Admin, Owner
from simulators.base import SimDevice, provision_device
from simulators.car import Car
from simulators.household import Fridge, SmartMeter
from simulators.metrics import Recorder
from simulators.misbehaving import MisbehavingDevice
from simulators.stations import EvCharger, FuelPump, Station

CURRENCY = "EUR"
MERCHANTS = {
    "parking": "City Parking",
    "tolls": "Motorway Tolls",
    "insurance": "Car Insurer",
    "groceries": "Corner Grocer",
    "utilities": "City Power",
    "maintenance": "Town Garage",
}
MISBEHAVING_MAX_AMOUNT = 1000
RULES: dict[str, dict[str, Any]] = {
    "car": {
        "currency": CURRENCY,
        "max_amount": 60000,
        "limits": [{"period": "day", "amount": 500000}],
        "allowed_categories": [
            "fuel",
            "ev_charging",
            "parking",
            "tolls",
            "insurance",
            "maintenance",
        ],
        "approval_above": 15000,
    },
    "fridge": {
        "currency": CURRENCY,
        "max_amount": 25000,
        "allowed_categories": ["groceries"],
        "approval_above": 8000,
        "approval_ttl_seconds": 120,
    },
    "smart_meter": {
        "currency": CURRENCY,
        "allowed_categories": ["utilities"],
        "approval_above": 1,
    },  # every bill asks, unless the mandate covers it
    "other": {"currency": CURRENCY, "max_amount": MISBEHAVING_MAX_AMOUNT},
}
TOP_UPS = {"car": 2_000_000, "fridge": 500_000, "smart_meter": 1_000_000, "other": 5_000}
# A funded car starts nearly empty: its owner's everyday account tops it up as it pays (rules'
# `auto_top_up`, contract section 8), so nobody tops it up by hand.
FUNDED_CAR_WALLET = 3_000
AUTO_TOP_UP = {"below": 5_000, "to": 30_000}


def rules_for(kind: str, funded: bool = False) -> dict[str, Any]:
    """The rules a payer of `kind` gets; a funded one also tops itself up automatically."""
    return {**RULES[kind], "auto_top_up": AUTO_TOP_UP} if funded else RULES[kind]


@dataclass(frozen=True)
class Mix:
    """How many devices of each kind."""

    cars: int = 0
    fridges: int = 0
    meters: int = 0
    misbehaving: int = 0
    pumps: int = 0
    chargers: int = 0
    funded_cars: int = 0  # the first cars, paid for from their owner's funding sources

    @classmethod
    def for_total(cls, devices: int) -> Mix:
        """A fleet of about `devices` payers in households, plus stations for the cars."""
        assert devices >= 1, devices
        misbehaving = 1 if devices >= 5 else 0
        rest = devices - misbehaving
        cars, fridges = (rest + 2) // 3, (rest + 1) // 3
        stations = max(1, cars // 10) if cars else 0
        return cls(
            cars=cars,
            fridges=fridges,
            meters=rest - cars - fridges,
            misbehaving=misbehaving,
            pumps=stations,
            chargers=stations,
        )


@dataclass
class Fleet:
    """Connected simulators and the people behind them."""

    simulators: list[SimDevice]
    owners: dict[str, Owner]  # device id -> its owner
    merchants: dict[str, str]  # category -> merchant id
    recorder: Recorder
    admin: Admin
    operators: list[Owner] = field(default_factory=list)
    merchant_keys: dict[str, str] = field(default_factory=dict)  # merchant id -> its API key
    clients: list[DeviceClient] = field(default_factory=list)  # every one connected, to close
    funded: set[str] = field(default_factory=set)  # devices topped up by `auto_top_up`

    @property
    def payers(self) -> list[SimDevice]:
        return [s for s in self.simulators if s.initiates]

    @property
    def stations(self) -> list[Station]:
        return [s for s in self.simulators if isinstance(s, Station)]

    def step(self, now: float) -> None:
        for simulator in self.simulators:
            simulator.step(now)

    def close(self) -> None:
        for client in self.clients:
            client.close()
        for owner in {id(o): o for o in [*self.owners.values(), *self.operators]}.values():
            owner.close()
        self.admin.close()


@dataclass(frozen=True)
class Broker:
    host: str
    port: int


def seed_fleet(
    api_url: str,
    broker: Broker,
    admin_token: str,
    mix: Mix,
    state_dir: Path,
    *,
    seed: int = 0,
    recorder: Recorder | None = None,
    interval_s: float | None = None,
    month_s: float | None = None,
    clock: Callable[[], float] | None = None,
) -> Fleet:
    """Create everything through the API, provision and connect each device.

    `interval_s` and `month_s` drive the simulators by themselves (`step`); leave them None
    when something else (the population runner) decides when they act. `clock` is the wall
    clock the devices stamp orders with.
    """
    state_dir = Path(state_dir)
    if state_dir.exists() and any(state_dir.iterdir()):
        raise ValueError(f"{state_dir} is not empty: a fleet is seeded into a new state dir")
    seeder = _Seeder(api_url, broker, admin_token, state_dir, seed, clock)
    fleet = Fleet(
        [],
        {},
        seeder.merchants,
        recorder or Recorder(),
        seeder.admin,
        merchant_keys=seeder.merchant_keys,
    )
    try:
        seeder.build(fleet, mix, interval_s, month_s)
    except BaseException:
        fleet.close()
        raise
    return fleet


class _Seeder:
    def __init__(
        self,
        api_url: str,
        broker: Broker,
        admin_token: str,
        state_dir: Path,
        seed: int,
        clock: Callable[[], float] | None,
    ) -> None:
        self.api_url, self.broker, self.state_dir, self.seed = api_url, broker, state_dir, seed
        self.clock = clock
        self.run = secrets.token_hex(3)  # serial numbers are unique per gateway, forever
        self.admin = Admin(api_url, admin_token)
        self.integrator = self.admin.create_integrator(f"KYM Simulators {self.run}")
        created = {
            category: self.admin.create_merchant(name, category, CURRENCY)
            for category, name in MERCHANTS.items()
        }
        self.merchants = {category: merchant["id"] for category, merchant in created.items()}
        self.merchant_keys = {merchant["id"]: merchant["api_key"] for merchant in created.values()}

    def build(
        self, fleet: Fleet, mix: Mix, interval_s: float | None, month_s: float | None
    ) -> None:
        operator = self._owner("station operator")
        fleet.operators.append(operator)
        pumps = [self._station(fleet, FuelPump, operator, n) for n in range(mix.pumps)]
        chargers = [self._station(fleet, EvCharger, operator, n) for n in range(mix.chargers)]
        households = max(mix.cars, mix.fridges, mix.meters, 1)
        homes = [self._owner(f"household {n}") for n in range(households)]
        for n in range(mix.cars):
            client, rng = self._payer(fleet, homes[n], "car", f"car-{n}", n < mix.funded_cars)
            fleet.simulators.append(
                Car(
                    client,
                    merchants=self.merchants,
                    pumps=pumps,
                    chargers=chargers,
                    rng=rng,
                    recorder=fleet.recorder,
                    interval_s=interval_s,
                )
            )
        for n in range(mix.fridges):
            client, rng = self._payer(fleet, homes[n], "fridge", f"fridge-{n}")
            fleet.simulators.append(
                Fridge(
                    client,
                    grocer=self.merchants["groceries"],
                    rng=rng,
                    recorder=fleet.recorder,
                    interval_s=interval_s,
                )
            )
        for n in range(mix.meters):
            client, rng = self._payer(fleet, homes[n], "smart_meter", f"meter-{n}")
            fleet.simulators.append(
                SmartMeter(
                    client,
                    utility=self.merchants["utilities"],
                    rng=rng,
                    recorder=fleet.recorder,
                    month_s=month_s,
                )
            )
        for n in range(mix.misbehaving):
            owner = self._owner(f"owner of rogue {n}")
            client, rng = self._payer(fleet, owner, "other", f"rogue-{n}")
            fleet.simulators.append(
                MisbehavingDevice(
                    client,
                    payee=self.merchants["parking"],
                    rng=rng,
                    recorder=fleet.recorder,
                    max_amount_minor=MISBEHAVING_MAX_AMOUNT,
                    interval_s=interval_s,
                )
            )

    def _owner(self, name: str) -> Owner:
        created = self.admin.create_owner(name)
        return Owner(self.api_url, created["id"], created["api_key"])

    def _station(self, fleet: Fleet, cls: type[Station], operator: Owner, n: int) -> Station:
        name = f"{cls.kind}-{n}"
        client, rng = self._device(fleet, operator, cls.kind, name, cls.category)
        station = cls(client, rng=rng, recorder=fleet.recorder)
        fleet.simulators.append(station)
        return station

    def _payer(
        self, fleet: Fleet, owner: Owner, kind: str, name: str, funded: bool = False
    ) -> tuple[DeviceClient, random.Random]:
        client, rng = self._device(fleet, owner, kind, name, None)
        device_id = client.device_id
        owner.set_rules(device_id, rules_for(kind, funded))
        if kind == "car":
            owner.add_mandate(
                device_id, {"payee": self.merchants["insurance"], "max_amount": 20000}
            )
        elif kind == "smart_meter":
            owner.add_mandate(
                device_id,
                {
                    "payee": self.merchants["utilities"],
                    "category": "utilities",
                    "max_amount": 20000,
                },
            )
        seed = FUNDED_CAR_WALLET if funded else TOP_UPS[kind]
        owner.top_up(device_id, seed, CURRENCY, f"seed-{device_id}")
        if funded:
            fleet.funded.add(device_id)
        return client, rng

    def _device(
        self, fleet: Fleet, owner: Owner, kind: str, name: str, category: str | None
    ) -> tuple[DeviceClient, random.Random]:
        directory = provision_device(
            self.state_dir / name,
            self.api_url,
            self.integrator["api_key"],
            owner.id,
            kind,
            f"{name}-{self.run}",
            category=category,
            currency=CURRENCY,
        )
        options: dict[str, Any] = {"rng": random.Random(f"{self.seed}:{name}:ids")}
        if self.clock is not None:
            options["clock"] = self.clock
        client = DeviceClient.from_state_dir(
            directory, self.broker.host, self.broker.port, **options
        )
        fleet.clients.append(client)
        owner.approve_device(client.device_id)
        fleet.owners[client.device_id] = owner
        client.connect()
        return client, random.Random(f"{self.seed}:{name}")
