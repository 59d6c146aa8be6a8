"""`kym demo`: the whole story on embedded defaults, shown as it happens.

It starts the gateway in a temp dir (SQLite; Mosquitto when installed, else the embedded
broker) and seeds a small fleet through the HTTP API (`simulators.fleet.seed_fleet`). A script
plays first, so that every outcome shows within seconds whatever the dice say: payments
approved, and declined by the rules; orders that wait for the owner, who approves one and
declines another; a hold captured and partly refunded; a hold voided; a payment above the
approval threshold covered by a mandate; and each trick of the misbehaving device, refused.
Then the simulators act by themselves on a compressed clock (a month lasts 20 s) while the
demo plays the owners: it decides what waits for approval and tops up wallets that run low.
The summary reconciles the ledger and verifies the audit chain.

Everything runs in this process. The devices are SDK clients over mutual TLS and the owners
use the HTTP API, as anywhere else; only the view of the balances reads the database.

This module runs it all; the script and the owners are in `gateway.demo_script`, what shows
in the terminal in `gateway.demo_view`.
"""

from __future__ import annotations

import queue
import random
import secrets
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from types import FrameType
from typing import Any, cast

from rich.console import Console
from rich.text import Text

from devices.sdk import Event, Result
from gateway.broker.mosquitto import ManagedMosquitto
from gateway.db import Database
from gateway.demo_script import Desk, Script, Story, only, opening
from gateway.demo_view import (
    View,
    balances_table,
    print_orders,
    print_rogue,
    print_scenarios,
    print_verdict,
)
from gateway.server import Running, free_port, running_gateway
from gateway.service import verify_audit
from gateway.settings import Settings
from simulators.car import Car
from simulators.fleet import MERCHANTS, RULES, Broker, Fleet, Mix, seed_fleet
from simulators.metrics import Recorder
from simulators.misbehaving import MisbehavingDevice
from wallet.check import check
from wallet.ledger import Wallet
from wallet.store import get_wallet

MIX = Mix(cars=2, fridges=1, meters=1, misbehaving=1, pumps=1, chargers=1)
CAR_DAY_LIMIT_MINOR = 10_000_000  # a car drives days' worth in minutes of compressed time
INTERVAL_S = {"car": 5.0, "fridge": 6.0, "smart_meter": 20.0, "other": 4.0}  # meter: its month
STEP_S = 0.05
SCRIPT_TIMEOUT_S = 20.0
SETTLE_S = 10.0
READ_WALLETS_EVERY_S = 1.0


def run_demo(duration_s: float | None, broker: str, console: Console, *, seed: int = 0) -> int:
    """Run the demo until `duration_s` has passed or Ctrl-C; the exit code (0 when sound)."""
    with tempfile.TemporaryDirectory(prefix="kym-demo-", ignore_cleanup_errors=True) as tmp:
        settings = demo_settings(Path(tmp), broker)
        started = time.monotonic()
        try:
            with ExitStack() as stack:
                with console.status("starting the gateway"):
                    running = stack.enter_context(running_gateway(settings, quiet=True))
                with console.status("seeding owners, merchants and devices"):
                    fleet = seed_fleet(
                        running.api_url,
                        Broker(running.broker.host, running.broker.port),
                        settings.admin_token or "",
                        MIX,
                        Path(tmp) / "devices",
                        seed=seed,
                        recorder=DemoRecorder(),
                    )
                stack.callback(fleet.close)  # before the gateway stops
                demo = Demo(running, fleet, console, seed)
                demo.introduce(tmp, time.monotonic() - started)
                demo.play(duration_s)
                return demo.report()
        except KeyboardInterrupt:
            console.print("interrupted")
            return 130


def demo_settings(tmp: Path, broker: str) -> Settings:
    """A gateway of its own in `tmp`: SQLite, free local ports, a fresh admin token."""
    return Settings(
        data_dir=tmp / "data",
        database_url=f"sqlite:///{tmp / 'kym.db'}",
        http=f"127.0.0.1:{free_port()}",
        mqtt=f"127.0.0.1:{free_port()}",
        broker_url=None,
        broker=cast(Any, broker),  # pydantic checks it
        admin_token=secrets.token_urlsafe(24),
        gateway_workers=1,
        worker_index=0,
    )


class DemoRecorder(Recorder):
    """The fleet's recorder, which also hands each result and event to the demo's main loop."""

    def __init__(self) -> None:
        super().__init__()
        self.arrivals: queue.Queue[tuple[float, str, Result | Event]] = queue.Queue()

    def result(self, device_id: str, result: Result) -> None:
        super().result(device_id, result)
        self.arrivals.put((self.clock(), device_id, result))

    def event(self, device_id: str, event: Event) -> None:
        super().event(device_id, event)
        self.arrivals.put((self.clock(), device_id, event))


class Demo:
    """The fleet, the script, the owners' desk and the view, stepped by one loop."""

    def __init__(self, running: Running, fleet: Fleet, console: Console, seed: int) -> None:
        self.running, self.fleet, self.console = running, fleet, console
        self.names = names_of(fleet)
        self.story = Story()
        for client in fleet.clients:
            self.story.watch(client)
        self.rogue = only(fleet, MisbehavingDevice)
        for car in (s for s in fleet.simulators if isinstance(s, Car)):
            rules = {**RULES["car"], "limits": [{"period": "day", "amount": CAR_DAY_LIMIT_MINOR}]}
            fleet.owners[car.device_id].set_rules(car.device_id, rules)
        plan: dict[str, bool] = {}
        self.script = Script(opening(fleet), self.rogue, plan)
        self.started = time.monotonic()
        merchants = set(fleet.merchants.values())
        self.view = View(console, self.names, merchants, self.story, self.started, None)
        self.desk = Desk(fleet, plan, random.Random(f"{seed}:owners"), self.view.say, self.names)
        self.free = False  # whether the devices act by themselves yet
        self.stop = threading.Event()
        self._wallets_read_at = 0.0

    def introduce(self, tmp: str, startup_s: float) -> None:
        mosquitto = isinstance(self.running.ctx.broker, ManagedMosquitto)
        broker = "Mosquitto" if mosquitto else "the embedded broker"
        text = Text.assemble(
            ("KYM demo", "bold"),
            f": gateway in {tmp} (SQLite), {broker} on mqtts://{self.running.broker.host}:"
            f"{self.running.broker.port}, API on {self.running.api_url}; "
            f"{len(self.fleet.simulators)} devices and {len(self.fleet.merchants)} merchants "
            f"ready in {startup_s:.1f} s. A script plays first, then the devices act by "
            "themselves.",
        )
        self.console.print(text, soft_wrap=not self.console.is_terminal)

    def play(self, duration_s: float | None) -> None:
        """Until `duration_s` has passed, or Ctrl-C; then let what is in flight finish."""
        self.started = self.view.started = time.monotonic()
        self.view.duration_s = duration_s
        with self.view, ctrl_c_sets(self.stop):
            while not self.stop.is_set() and (duration_s is None or self.elapsed_s() < duration_s):
                self.tick()
                time.sleep(STEP_S)
            if self.stop.is_set():
                self.view.say("Ctrl-C: finishing what is in flight (again to stop waiting)")
            with suppress(KeyboardInterrupt):  # a second Ctrl-C: the summary says what's left
                self.settle()

    def elapsed_s(self) -> float:
        return time.monotonic() - self.started

    def tick(self, scripted: bool = True) -> None:
        now = time.monotonic()
        if scripted and not self.free:
            self.script.run(now - self.started, now)
            if self.script.done(self.story) or now - self.started > SCRIPT_TIMEOUT_S:
                self.set_free()
        self.fleet.step(now)
        self._drain()
        self.desk.run(now)
        if now - self._wallets_read_at >= READ_WALLETS_EVERY_S:
            self._wallets_read_at = now
            wallets = read_wallets(self.running.ctx.db, self.names)
            if self.free:
                self.desk.top_up(wallets)
            self.view.update(wallets, now)

    def set_free(self) -> None:
        """The script is over: the devices act on their own schedules from now on."""
        self.free = True
        for station in self.fleet.stations:
            station.void_probability, station.refund_probability = 0.1, 0.25
        for simulator in self.fleet.payers:
            simulator.interval_s = INTERVAL_S[simulator.kind]
        self.view.say("the script is done; from now on the devices act by themselves")

    def settle(self) -> None:
        """Stop new actions; finish the orders, sessions and approvals in flight."""
        for simulator in self.fleet.payers:
            simulator.interval_s = None
        deadline = time.monotonic() + SETTLE_S
        while time.monotonic() < deadline and self._busy():
            self.tick(scripted=False)
            time.sleep(STEP_S)

    def report(self) -> int:
        """Print the summary; 0 when the ledger, the audit chain and the rogue's refusals hold."""
        elapsed_s = self.elapsed_s()
        self._drain()
        db = self.running.ctx.db
        with db.snapshot() as conn:
            breaches = check(conn)
        entries, bad_entry = verify_audit(db)
        summary = self.fleet.recorder.summary(elapsed_s)
        dropped = sum(len(client.dropped) for client in self.fleet.clients)
        self.console.rule(f"Summary after {elapsed_s:.0f} s")
        print_scenarios(self.console, self.script.scenarios, self.story, self.names)
        print_orders(self.console, self.story, self.desk, summary, dropped)
        self.console.print("Balances", style="bold")
        self.console.print(balances_table(read_wallets(db, self.names), self.names))
        print_rogue(self.console, self.rogue, self.names)
        problems = [f"ledger breach: {breach}" for breach in breaches]
        if bad_entry is not None:
            problems.append(f"audit chain broken at entry {bad_entry[0]}: {bad_entry[1]}")
        problems += [f"surprise: {surprise}" for surprise in summary.surprises]
        if dropped:
            problems.append(f"{dropped} results or events failed verification on a device")
        print_verdict(self.console, breaches, (entries, bad_entry), problems)
        return 1 if problems else 0

    def _drain(self) -> None:
        arrivals = self.fleet.recorder
        assert isinstance(arrivals, DemoRecorder)
        while True:
            try:
                at, device_id, item = arrivals.arrivals.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, Result):
                self.story.note_result(device_id, item)
                self.view.show_result(at, device_id, item)
            else:
                self.story.note_event(device_id, item)

    def _busy(self) -> bool:
        stations_busy = any(s.serving or s.refunds_due for s in self.fleet.stations)
        return bool(
            self.fleet.recorder.open_orders
            or stations_busy
            or self.desk.waiting
            or self.rogue.outstanding
        )


@contextmanager
def ctrl_c_sets(stop: threading.Event) -> Iterator[None]:
    """The first Ctrl-C sets `stop`, so that no order is cut off halfway through sending; a
    second one raises KeyboardInterrupt as usual."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def names_of(fleet: Fleet) -> dict[str, str]:
    """Readable names of every wallet holder: devices first, then merchants."""
    names = {s.device_id: s.client.identity.paths.root.name for s in fleet.simulators}
    names.update(
        {merchant_id: MERCHANTS[category] for category, merchant_id in fleet.merchants.items()}
    )
    return names


def read_wallets(db: Database, holder_ids: dict[str, str]) -> dict[str, Wallet]:
    with db.read() as conn:
        wallets = {holder_id: get_wallet(conn, holder_id) for holder_id in holder_ids}
    return {holder_id: w for holder_id, w in wallets.items() if w is not None}
