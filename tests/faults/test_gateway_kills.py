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

from tests.faults.fleet import (
    Device,
    Stream,
    acknowledged,
    check_outcome,
    close_fleet,
    connect_fleet,
    register_fleet,
    report,
    wait_until_decided,
)
from tests.faults.processes import Gateway, Mosquitto

pytestmark = [pytest.mark.slow, pytest.mark.mosquitto]
DEVICES = 4
PERIOD_S = 0.15
KILLS = {"external": 7, "managed": 6}
DECIDE_TIMEOUT_S = 60


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


def test_a_sigkilled_gateway_behind_mosquitto_loses_no_acknowledged_order(
    database: str, mosquitto: Mosquitto, tmp_path: Path
) -> None:
    seed, kills = random.randrange(1 << 30), KILLS["external"]
    gateway = Gateway(tmp_path / "data", database, broker_url=mosquitto.url)
    fleet: list[Device] = []
    try:
        gateway.start()
        gateway.wait_healthy()
        fleet, merchant = register_fleet(gateway.url, tmp_path / "devices", DEVICES)
        connect_fleet(fleet, mosquitto.port, resend_after=None)  # they never re-send
        run_with_kills(gateway, fleet, merchant, kills, seed)
        orders = {d.id: acknowledged(d) for d in fleet}
        assert all(len(orders[d.id]) == len(d.sent) for d in fleet), "the broker stayed up"
        wait_until_decided(fleet, orders, DECIDE_TIMEOUT_S)
        figures = check_outcome(fleet, gateway.url, gateway.data_dir, database, orders)
        db = database.split(":")[0].split("+")[0]
        report(figures.line(f"sigkill external-mosquitto {db}", kills=kills, seed=seed))
        assert (figures.lost, figures.conflicting) == (0, 0), gateway.tail_of_log()
    finally:
        close_fleet(fleet)
        gateway.stop()


def test_a_sigkilled_gateway_with_its_managed_mosquitto_loses_no_order(
    mosquitto_binary: str, tmp_path: Path
) -> None:
    seed, kills = random.randrange(1 << 30), KILLS["managed"]
    database = f"sqlite:///{tmp_path / 'kym.db'}"
    gateway = Gateway(tmp_path / "data", database)
    fleet: list[Device] = []
    try:
        gateway.start()
        gateway.wait_healthy()
        fleet, merchant = register_fleet(gateway.url, tmp_path / "devices", DEVICES)
        connect_fleet(fleet, gateway.mqtt_port, resend_after=2.0)  # the SDK re-sends
        run_with_kills(gateway, fleet, merchant, kills, seed)
        orders = {d.id: set(d.sent) for d in fleet}  # every journaled order
        wait_until_decided(fleet, orders, DECIDE_TIMEOUT_S)
        figures = check_outcome(fleet, gateway.url, gateway.data_dir, database, orders)
        report(figures.line("sigkill managed-mosquitto sqlite", kills=kills, seed=seed))
        assert (figures.lost, figures.conflicting) == (0, 0), gateway.tail_of_log()
    finally:
        close_fleet(fleet)
        gateway.stop()
