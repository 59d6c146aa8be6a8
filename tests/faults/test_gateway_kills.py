"""SIGKILL of `kym serve` at random moments while devices that stay up keep paying.

Behind a Mosquitto that outlives the gateway, the devices never re-send: every order the broker
acknowledged must still be decided exactly once. With the managed Mosquitto, which dies with
(or is taken over by) the gateway, the SDK's own re-sending recovers what the broker lost.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from tests.faults.fleet import Device, Stream, all_acknowledged, assert_decided_once, running_fleet
from tests.faults.processes import Gateway, Mosquitto, Postgres

pytestmark = [pytest.mark.slow]
DEVICES = 4
PERIOD_S = 0.15
KILLS = {"external": 7, "managed": 6, "embedded": 6, "two processes": 8}


def kill_at_random_moments(gateway: Gateway, kills: int, rng: random.Random) -> None:
    """Start and SIGKILL the gateway `kills` times: during start-up, recovery or deciding."""
    for _ in range(kills):
        time.sleep(rng.uniform(0.0, 0.5))
        gateway.start()
        time.sleep(rng.uniform(0.4, 3.5))
        gateway.kill()
    gateway.start()
    gateway.wait_healthy()


def run_with_kills(
    gateway: Gateway, fleet: list[Device], merchant: str, kills: int, seed: int
) -> None:
    stream = Stream(fleet, merchant, PERIOD_S)
    stream.start()
    try:
        time.sleep(1.0)
        gateway.kill()
        kill_at_random_moments(gateway, kills - 1, random.Random(seed))
        time.sleep(1.0)
    finally:
        stream.stop()


@pytest.mark.mosquitto
def test_a_sigkilled_gateway_behind_mosquitto_loses_no_acknowledged_order(
    database: str, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    seed, kills = random.randrange(1 << 30), KILLS["external"]
    gateway = Gateway(tmp_path / "data", database, broker_url=mosquitto.url)
    devices = tmp_path / "devices"
    with running_fleet(gateway, devices, DEVICES, mosquitto.port, None) as (fleet, merchant):
        run_with_kills(gateway, fleet, merchant, kills, seed)  # the devices never re-send
        orders = all_acknowledged(fleet, "the broker stayed up")
        db = database.split(":")[0].split("+")[0]
        name = f"sigkill external-mosquitto {db}"
        assert_decided_once(fleet, gateway, database, orders, name, kills=kills, seed=seed)


@pytest.mark.mosquitto
def test_a_sigkilled_gateway_with_its_managed_mosquitto_loses_no_order(
    mosquitto_binary: str, tmp_path: Path
) -> None:
    seed, kills = random.randrange(1 << 30), KILLS["managed"]
    database = f"sqlite:///{tmp_path / 'kym.db'}"
    gateway = Gateway(tmp_path / "data", database)
    devices, port = tmp_path / "devices", gateway.mqtt_port
    with running_fleet(gateway, devices, DEVICES, port, 2.0) as (fleet, merchant):
        run_with_kills(gateway, fleet, merchant, kills, seed)  # the SDK re-sends
        orders = {d.id: set(d.sent) for d in fleet}  # every journaled order
        name = "sigkill managed-mosquitto sqlite"
        assert_decided_once(fleet, gateway, database, orders, name, kills=kills, seed=seed)


def test_a_sigkilled_gateway_with_its_embedded_broker_loses_no_order(tmp_path: Path) -> None:
    """The newcomer's default where Mosquitto is not installed: the broker lives in the
    gateway's process and dies with it, so what it held is gone; the SDK's re-sends recover
    every journaled order, and idempotency answers the ones decided already."""
    seed, kills = random.randrange(1 << 30), KILLS["embedded"]
    database = f"sqlite:///{tmp_path / 'kym.db'}"
    gateway = Gateway(tmp_path / "data", database, broker="embedded")
    devices, port = tmp_path / "devices", gateway.mqtt_port
    with running_fleet(gateway, devices, DEVICES, port, 2.0) as (fleet, merchant):
        run_with_kills(gateway, fleet, merchant, kills, seed)  # the SDK re-sends
        orders = {d.id: set(d.sent) for d in fleet}  # every journaled order
        name = "sigkill embedded-broker sqlite"
        assert_decided_once(fleet, gateway, database, orders, name, kills=kills, seed=seed)


@pytest.mark.postgres
@pytest.mark.mosquitto
def test_two_gateway_processes_sigkilled_in_turn_lose_no_acknowledged_order(
    postgres_cluster: Postgres, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    """Scaled out: two `kym serve` processes (identities kym-gateway-0 and -1) share the orders
    subscription and one PostgreSQL database; either is SIGKILLed at random moments, while the
    other keeps deciding, and started again. The devices never re-send."""
    seed, kills = random.randrange(1 << 30), KILLS["two processes"]
    rng, database = random.Random(seed), postgres_cluster.url()
    first = Gateway(tmp_path / "data", database, broker_url=mosquitto.url)
    second = Gateway(tmp_path / "data", database, broker_url=mosquitto.url, worker_index=1)
    devices = tmp_path / "devices"
    with running_fleet(first, devices, DEVICES, mosquitto.port, None) as (fleet, merchant):
        second.start()
        try:
            second.wait_healthy()
            kill_either_in_turn(first, second, Stream(fleet, merchant, PERIOD_S), kills, rng)
            orders = all_acknowledged(fleet, "the broker stayed up")
            name = "sigkill two gateway processes postgresql"
            assert_decided_once(fleet, first, database, orders, name, kills=kills, seed=seed)
        finally:
            second.stop()


def kill_either_in_turn(
    first: Gateway, second: Gateway, stream: Stream, kills: int, rng: random.Random
) -> None:
    """While the devices pay, SIGKILL one of the two at random moments and start it again;
    both are up and healthy when it returns (each identity's session holds its own share)."""
    stream.start()
    try:
        for _ in range(kills):
            time.sleep(rng.uniform(0.3, 2.5))
            victim = rng.choice([first, second])
            victim.kill()
            time.sleep(rng.uniform(0.0, 1.5))
            victim.start()
        first.wait_healthy()
        second.wait_healthy()
        time.sleep(1.0)
    finally:
        stream.stop()
