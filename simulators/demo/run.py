"""`kym demo`: the whole story, shown as it happens, against a gateway someone else started.

The CLI starts the gateway in a temp dir (SQLite; Mosquitto when installed, else the embedded
broker) and hands this module its addresses, the admin token and a `Verify` callable for the
summary's ledger and audit checks; this module is a client like any firmware and imports
nothing from `gateway` or `wallet`. It seeds a small fleet through the HTTP API
(`simulators.fleet.seed_fleet`). A script plays first, so that every outcome shows within
seconds whatever the dice say: payments approved, and declined by the rules; orders that wait
for the owner, who approves one and declines another; a hold captured and partly refunded; a
hold voided; a payment above the approval threshold covered by a mandate; and each trick of
the misbehaving device, refused. Then the simulators act by themselves on a compressed clock
(a month lasts 20 s) while the demo plays the owners: it decides what waits for approval and
tops up wallets that run low. The summary reconciles the ledger and verifies the audit chain.

The devices are SDK clients over mutual TLS; the owners and merchants use the HTTP API.
The script and the owners are in `simulators.demo.script`, what shows in the terminal in
`simulators.demo.view`.
"""

from __future__ import annotations

import queue
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.text import Text

from devices.sdk import Event, GatewayApi, Result
from simulators.backoffice import Balance
from simulators.car import Car
from simulators.demo.events import Inbox
from simulators.demo.funding import funding_table
from simulators.demo.funding import set_up as set_up_funding
from simulators.demo.script import DECIDE_AFTER_S, Desk, Script, Story, only, opening
from simulators.demo.view import (
    Verdict,
    View,
    balances_table,
    print_orders,
    print_rogue,
    print_scenarios,
    print_verdict,
)
from simulators.fleet import MERCHANTS, Broker, Fleet, Mix, rules_for, seed_fleet
from simulators.household import Fridge
from simulators.metrics import Recorder
from simulators.misbehaving import MisbehavingDevice

MIX = Mix(cars=2, fridges=1, meters=1, misbehaving=1, pumps=1, chargers=1, funded_cars=1)
CAR_DAY_LIMIT_MINOR = 10_000_000  # a car drives days' worth in minutes of compressed time
INTERVAL_S = {"car": 5.0, "fridge": 6.0, "smart_meter": 20.0, "other": 4.0}  # meter: its month
STEP_S = 0.05
SCRIPT_TIMEOUT_S = 20.0
SETTLE_S = 10.0
READ_WALLETS_EVERY_S = 1.0


@dataclass(frozen=True)
class DemoGateway:
    """A running gateway, as the CLI hands it over."""

    api_url: str
    broker: Broker
    broker_name: str  # for the introduction: "Mosquitto" or "the embedded broker"
    admin_token: str
    home: Path  # the temp dir it runs in (removed afterwards)
    verify: Callable[[], Verdict]
    # An owner's API key -> a one-time sign-in link to the console (None for a key it refuses).
    console_link: Callable[[str], str | None]


def run_demo(
    gateway: DemoGateway,
    duration_s: float | None,
    console: Console,
    *,
    seed: int = 0,
    started: float | None = None,
) -> int:
    """Run the demo until `duration_s` has passed or Ctrl-C; the exit code (0 when sound).

    `started` is when the gateway began starting (monotonic), for the introduction.
    """
    started = time.monotonic() if started is None else started
    with console.status("seeding owners, merchants and devices"):
        fleet = seed_fleet(
            gateway.api_url,
            gateway.broker,
            gateway.admin_token,
            MIX,
            gateway.home / "devices",
            seed=seed,
            recorder=DemoRecorder(),
        )
    with ExitStack() as stack:
        stack.callback(fleet.close)
        demo = Demo(gateway, fleet, console, seed)
        stack.callback(demo.wallets.close)
        stack.callback(demo.inbox.close)
        demo.inbox.open()
        demo.introduce(time.monotonic() - started)
        demo.play(duration_s)
        return demo.report()


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

    def __init__(self, gateway: DemoGateway, fleet: Fleet, console: Console, seed: int) -> None:
        self.gateway, self.fleet, self.console = gateway, fleet, console
        self.names = names_of(fleet)
        self.wallets = Wallets(gateway.api_url, fleet)
        self.story = Story()
        for client in fleet.clients:
            self.story.watch(client)
        self.rogue = only(fleet, MisbehavingDevice)
        for car in (s for s in fleet.simulators if isinstance(s, Car)):
            rules = rules_for("car", car.device_id in fleet.funded)
            rules = {**rules, "limits": [{"period": "day", "amount": CAR_DAY_LIMIT_MINOR}]}
            fleet.owners[car.device_id].set_rules(car.device_id, rules)
        self.household = set_up_funding(fleet)
        if self.household is not None:
            self.names.update(self.household.sources)
        plan: dict[str, bool] = {}
        self.script = Script(opening(fleet), self.rogue, plan)
        self.started = time.monotonic()
        merchants = set(fleet.merchants.values())
        self.view = View(console, self.names, merchants, self.story, self.started, None)
        self.inbox = Inbox(gateway.api_url, [fleet.owners[s.device_id] for s in fleet.payers])
        rng = random.Random(f"{seed}:owners")
        self.desk = Desk(fleet, self.inbox, plan, rng, self.view.say, self.names)
        self.free = False  # whether the devices act by themselves yet
        self.stop = threading.Event()
        self._wallets_read_at = 0.0

    def introduce(self, startup_s: float) -> None:
        gateway = self.gateway
        text = Text.assemble(
            ("KYM demo", "bold"),
            f": gateway in {gateway.home} (SQLite), {gateway.broker_name} on mqtts://"
            f"{gateway.broker.host}:{gateway.broker.port}, API on {gateway.api_url}; "
            f"{len(self.fleet.simulators)} devices and {len(self.fleet.merchants)} merchants "
            f"ready in {startup_s:.1f} s. A script plays first, then the devices act by "
            "themselves.",
        )
        self.console.print(text, soft_wrap=not self.console.is_terminal)
        self.introduce_console()

    def introduce_console(self) -> None:
        """The console's sign-in link for the fridge's owner, on a line of its own."""
        fridge = only(self.fleet, Fridge)
        owner = self.fleet.owners[fridge.device_id]
        link = self.gateway.console_link(owner.api_key)
        if link is None:
            raise RuntimeError("the gateway gave no console link for the demo's owner")
        devices = ", ".join(
            self.names[s.device_id]
            for s in self.fleet.simulators
            if self.fleet.owners.get(s.device_id) is owner
        )
        self.console.print(Text("Owner console", style="bold"), Text(f"(owner of {devices}):"))
        self.console.print(Text(link, style="bold cyan"), soft_wrap=True)
        self.console.print(
            Text(
                "Open it within ten minutes; it signs you in once. The demo plays this owner too:"
                f" it decides each approval {DECIDE_AFTER_S:g} s after the owner's event stream"
                " announces it.",
                style="dim",
            ),
            soft_wrap=not self.console.is_terminal,
        )

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
            wallets = self.wallets.read()
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
        verdict = self.gateway.verify()
        summary = self.fleet.recorder.summary(elapsed_s)
        dropped = sum(len(client.dropped) for client in self.fleet.clients)
        self.console.rule(f"Summary after {elapsed_s:.0f} s")
        print_scenarios(self.console, self.script.scenarios, self.story, self.names)
        print_orders(self.console, self.story, self.desk, summary, dropped)
        self.console.print("Balances", style="bold")
        self.console.print(balances_table(self.wallets.read(), self.names))
        if self.household is not None:
            car = self.names[self.household.car_id]
            self.console.print(f"Funding of {car}'s owner", style="bold")
            self.console.print(funding_table(self.household))
        print_rogue(self.console, self.rogue, self.names)
        problems = [f"ledger breach: {breach}" for breach in verdict.breaches]
        if verdict.audit_problem is not None:
            problems.append(f"audit chain broken: {verdict.audit_problem}")
        problems += [f"surprise: {surprise}" for surprise in summary.surprises]
        if dropped:
            problems.append(f"{dropped} results or events failed verification on a device")
        print_verdict(self.console, verdict, problems)
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


STOPPING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@contextmanager
def ctrl_c_sets(stop: threading.Event) -> Iterator[None]:
    """The first Ctrl-C (or SIGTERM, or the terminal closing: SIGHUP) sets `stop`, so that no
    order is cut off halfway through sending and the demo ends as with --duration: summary
    printed, temp dir (keys, database) removed; a second Ctrl-C raises KeyboardInterrupt.
    A second SIGTERM or SIGHUP changes nothing: it is a supervisor's repeat, not a person's
    impatience (`timeout 60 make demo` signals make's process group, and make passes the
    signal on to its child again), also once the summary is being printed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        stop.set()

    previous = {signum: signal.signal(signum, on_signal) for signum in STOPPING_SIGNALS}
    try:
        yield
    finally:
        if not stop.is_set():  # stopping: kept, so that a repeat during the summary is one
            for signum, handler in previous.items():
                signal.signal(signum, handler)


def names_of(fleet: Fleet) -> dict[str, str]:
    """Readable names of every wallet holder: devices first, then merchants."""
    names = {s.device_id: s.client.identity.paths.root.name for s in fleet.simulators}
    names.update(
        {merchant_id: MERCHANTS[category] for category, merchant_id in fleet.merchants.items()}
    )
    return names


class Wallets:
    """Every wallet in the demo over the HTTP API: devices' through their owners, merchants'
    with their own keys."""

    def __init__(self, api_url: str, fleet: Fleet) -> None:
        self.fleet = fleet
        self.merchants = {m: GatewayApi(api_url, key) for m, key in fleet.merchant_keys.items()}

    def read(self) -> dict[str, Balance]:
        """Devices first, then merchants (the order the view shows them in)."""
        found = {
            s.device_id: Balance.from_answer(self.fleet.owners[s.device_id].wallet(s.device_id))
            for s in self.fleet.simulators
        }
        for merchant_id, api in self.merchants.items():
            found[merchant_id] = Balance.from_answer(api.request("GET", "/v1/merchants/me/wallet"))
        return found

    def close(self) -> None:
        for api in self.merchants.values():
            api.close()
