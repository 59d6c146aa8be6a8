"""A population of devices paying at a fixed arrival rate (an open loop), and what it saw.

Open loop: the n-th order is due at `start + n / rate` whether or not earlier ones have been
answered, so a slow gateway shows up as latency (and as schedule lag when the sender itself
falls behind), never as a politely lower rate. Each arrival goes to a payer drawn from the
seeded RNG, which takes its next action (`act`); stations, approvals and refunds follow on
their own. An owner desk approves (or, now and then, declines) what waits for approval.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from devices.sdk import ApiError
from simulators.backoffice import Owner
from simulators.fleet import Broker, Fleet, Mix, seed_fleet
from simulators.metrics import Recorder, Summary

log = logging.getLogger("kym.population")
STEP_S = 0.05


class OpenLoop:
    """Arrivals at a fixed rate from `start`, for `duration_s` seconds. Pure: pass `now`."""

    def __init__(self, start: float, rate: float, duration_s: float) -> None:
        assert rate > 0 and duration_s >= 0, (rate, duration_s)
        self.start, self.rate, self.duration_s = start, rate, duration_s
        self.total = int(rate * duration_s)
        self.issued = 0
        self.max_lag_s = 0.0

    def due(self, now: float) -> int:
        """How many arrivals to issue at `now` (all of those whose time has come)."""
        count = 0
        while self.issued < self.total and self.at(self.issued) <= now:
            self.max_lag_s = max(self.max_lag_s, now - self.at(self.issued))
            self.issued += 1
            count += 1
        return count

    def at(self, n: int) -> float:
        return self.start + n / self.rate

    @property
    def next_at(self) -> float | None:
        return self.at(self.issued) if self.issued < self.total else None


class OwnerDesk:
    """Plays the owners: decides every pending approval of devices that reported one."""

    def __init__(self, fleet: Fleet, rng: random.Random, approve_probability: float) -> None:
        self.fleet, self.rng, self.approve_probability = fleet, rng, approve_probability
        self.decided: dict[str, int] = {"approve": 0, "decline": 0}
        self._handled: dict[str, int] = {}

    def run_once(self) -> None:
        owners = {}
        for simulator in self.fleet.payers:
            seen = simulator.pending_seen
            if seen > self._handled.get(simulator.device_id, 0):
                self._handled[simulator.device_id] = seen
                owner = self.fleet.owners[simulator.device_id]
                owners[owner.id] = owner
        for owner in owners.values():
            for approval in owner.pending_approvals():
                self._decide(owner, approval["id"])

    def _decide(self, owner: Owner, approval_id: str) -> None:
        approve = self.rng.random() < self.approve_probability
        try:
            owner.decide(approval_id, approve)
        except ApiError as exc:
            if exc.status != 409:  # decided or expired meanwhile: nothing to do
                raise
            return
        self.decided["approve" if approve else "decline"] += 1

    def run_until(self, stop: threading.Event, every_s: float = 0.25) -> None:
        while not stop.wait(every_s):
            try:
                self.run_once()
            except Exception:  # noqa: BLE001 - an owner's hiccup must not stop the run
                log.exception("the owner desk failed; trying again")


def drive(
    fleet: Fleet,
    rate: float,
    duration_s: float,
    *,
    seed: int = 0,
    settle_s: float = 10.0,
    approve_probability: float = 0.8,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> Summary:
    """Send orders at `rate` per second for `duration_s`, then let answers settle."""
    payers = fleet.payers
    assert payers, "a population needs at least one device that pays"
    rng = random.Random(f"{seed}:arrivals")
    desk = OwnerDesk(fleet, random.Random(f"{seed}:owners"), approve_probability)
    stop = threading.Event()
    desk_thread = threading.Thread(target=desk.run_until, args=(stop,), daemon=True)
    desk_thread.start()
    loop = OpenLoop(clock(), rate, duration_s)
    try:
        while loop.next_at is not None:
            now = clock()
            for _ in range(loop.due(now)):
                rng.choice(payers).act(now)
            fleet.step(now)
            wake = min(loop.next_at or now, now + STEP_S)
            sleep(max(0.0, wake - clock()))
        sent_s = clock() - loop.start
        _settle(fleet, settle_s, clock, sleep)
    finally:
        stop.set()
        desk_thread.join(5)
    dropped = sum(len(client.dropped) for client in fleet.clients)
    return fleet.recorder.summary(
        sent_s, arrivals=loop.issued, dropped=dropped, max_lag_s=loop.max_lag_s
    )


def run_population(
    api_url: str,
    broker_host: str,
    broker_port: int,
    admin_token: str,
    devices: int | Mapping[str, int],
    rate: float,
    duration_s: float,
    state_dir: Path,
    *,
    seed: int = 0,
    settle_s: float = 10.0,
    approve_probability: float = 0.8,
) -> Summary:
    """Seed owners, merchants and devices through the API, then run the open loop.

    `devices` is a number of paying devices (cars, fridges and meters in households, one
    misbehaving device from five on, and stations for the cars) or an explicit `Mix` as a
    mapping (`{"cars": 10, "pumps": 2, ...}`).
    """
    mix = Mix.for_total(devices) if isinstance(devices, int) else Mix(**devices)
    fleet = seed_fleet(
        api_url,
        Broker(broker_host, broker_port),
        admin_token,
        mix,
        Path(state_dir),
        seed=seed,
        recorder=Recorder(),
    )
    try:
        return drive(
            fleet,
            rate,
            duration_s,
            seed=seed,
            settle_s=settle_s,
            approve_probability=approve_probability,
        )
    finally:
        fleet.close()


def _settle(
    fleet: Fleet, settle_s: float, clock: Callable[[], float], sleep: Callable[[float], None]
) -> None:
    """Keep stepping until every order is answered and every station is done, or time's up."""
    deadline = clock() + settle_s
    while clock() < deadline:
        fleet.step(clock())
        busy = any(s.serving or s.refunds_due for s in fleet.stations)
        if fleet.recorder.open_orders == 0 and not busy:
            return
        sleep(STEP_S)


def main(argv: list[str] | None = None) -> None:
    """`python -m simulators.population --api URL --broker HOST:PORT --admin-token T ...`"""
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--api", required=True, help="the gateway's HTTP API, e.g. http://...")
    parser.add_argument("--broker", required=True, help="HOST:PORT of the MQTT broker (TLS)")
    parser.add_argument("--admin-token", required=True)
    parser.add_argument("--devices", type=int, default=10)
    parser.add_argument("--rate", type=float, default=10.0, help="arrivals per second")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of arrivals")
    parser.add_argument("--state-dir", type=Path, required=True, help="a new, empty dir")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    host, _, port = args.broker.rpartition(":")
    summary = run_population(
        args.api,
        host,
        int(port),
        args.admin_token,
        args.devices,
        args.rate,
        args.duration,
        args.state_dir,
        seed=args.seed,
    )
    print(summary.render())


if __name__ == "__main__":
    main()
