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
"""

from __future__ import annotations

import queue
import random
import secrets
import signal
import socket
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar, cast

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from devices.sdk import ApiError, DeviceClient, Event, PreparedOrder, Result
from devices.sdk.messages import PENDING, pay_fields
from gateway.db import Database
from gateway.mosquitto import ManagedMosquitto
from gateway.server import Running, running_gateway
from gateway.service import verify_audit
from gateway.settings import Settings
from simulators.backoffice import Owner
from simulators.base import SimDevice
from simulators.car import Car
from simulators.fleet import (
    CURRENCY,
    MERCHANTS,
    RULES,
    TOP_UPS,
    Broker,
    Fleet,
    Mix,
    seed_fleet,
)
from simulators.household import Fridge, SmartMeter
from simulators.metrics import Recorder
from simulators.misbehaving import MisbehavingDevice
from simulators.stations import EvCharger, FuelPump
from wallet.check import check
from wallet.ledger import Wallet
from wallet.store import get_wallet

MIX = Mix(cars=2, fridges=1, meters=1, misbehaving=1, pumps=1, chargers=1)
CAR_DAY_LIMIT_MINOR = 10_000_000  # a car drives days' worth in minutes of compressed time
INTERVAL_S = {"car": 5.0, "fridge": 6.0, "smart_meter": 20.0, "other": 4.0}  # meter: its month
SESSION_S = (1.5, 3.5)  # a car at a pump or a charger, compressed like the month
STEP_S = 0.05
ROGUE_EVERY_S = 0.7  # the misbehaving device's pace while the script plays
DECIDE_AFTER_S = 1.5  # the owner reads an approval before deciding, so that it shows
APPROVE_PROBABILITY = 0.75
SCRIPT_TIMEOUT_S = 20.0
SETTLE_S = 10.0
READ_WALLETS_EVERY_S = 1.0
PRINT_BALANCES_EVERY_S = 10.0  # without a terminal (CI logs): balances as a line now and then
TOP_UP_BELOW = 0.25  # of the device's first top-up
STYLES = {"approved": "green", "captured": "cyan", "voided": "cyan", "refunded": "cyan",
          PENDING: "yellow", "declined": "red", "rejected": "magenta"}

T = TypeVar("T")


def run_demo(duration_s: float | None, broker: str, console: Console, *, seed: int = 0) -> int:
    """Run the demo until `duration_s` has passed or Ctrl-C; the exit code (0 when sound)."""
    with tempfile.TemporaryDirectory(prefix="kym-demo-", ignore_cleanup_errors=True) as tmp:
        settings = Settings(
            data_dir=Path(tmp) / "data", database_url=f"sqlite:///{Path(tmp) / 'kym.db'}",
            http=f"127.0.0.1:{_free_port()}", mqtt=f"127.0.0.1:{_free_port()}",
            broker_url=None, broker=cast(Any, broker),  # pydantic checks it
            admin_token=secrets.token_urlsafe(24),
            gateway_workers=1, worker_index=0,
        )
        started = time.monotonic()
        try:
            with ExitStack() as stack:
                with console.status("starting the gateway"):
                    running = stack.enter_context(running_gateway(settings, quiet=True))
                with console.status("seeding owners, merchants and devices"):
                    fleet = seed_fleet(
                        running.api_url, Broker(running.broker.host, running.broker.port),
                        settings.admin_token or "", MIX, Path(tmp) / "devices", seed=seed,
                        recorder=DemoRecorder())
                stack.callback(fleet.close)  # before the gateway stops
                demo = Demo(running, fleet, console, seed)
                demo.introduce(tmp, time.monotonic() - started)
                demo.play(duration_s)
                return demo.report()
        except KeyboardInterrupt:
            console.print("interrupted")
            return 130


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


class Story:
    """What each order was and what the devices were told about it (main thread only)."""

    def __init__(self) -> None:
        self.orders: dict[tuple[str, str], dict[str, Any]] = {}  # as signed
        self.payers: dict[str, str] = {}  # payment id -> the device that pays
        self.payments: dict[tuple[str, str], str] = {}  # (device, order) -> payment id
        self.statuses: defaultdict[tuple[str, str], list[str]] = defaultdict(list)
        self.events: defaultdict[tuple[str, str], list[str]] = defaultdict(list)
        self.outcomes: Counter[tuple[str, str, str]] = Counter()  # (type, status, reason)
        self.replays = 0

    def watch(self, client: DeviceClient) -> None:
        """Note every order the client signs: results name the order, not what it was."""
        prepare = client.prepare

        def noting(fields: dict[str, Any], order_id: str | None = None,
                   ts: int | None = None) -> PreparedOrder:
            prepared = prepare(fields, order_id, ts)
            self.orders[(client.device_id, prepared.order_id)] = fields
            return prepared

        client.prepare = noting  # type: ignore[method-assign]

    def order(self, device_id: str, order_id: str | None) -> dict[str, Any]:
        return self.orders.get((device_id, order_id or ""), {})

    def note_result(self, device_id: str, result: Result) -> None:
        if result.duplicate:
            self.replays += 1
            return
        key = (device_id, result.order_id or "")
        went_pending = PENDING in self.statuses.get(key, [])
        if result.order_id:
            self.statuses[key].append(_decision(result.status, result.reason))
        if result.status == "approved" and result.payment_id:
            self.payers[result.payment_id] = device_id
            self.payments[key] = result.payment_id
        if result.is_final:
            reason = result.reason or ("after the owner approved" if went_pending else "")
            kind = self.order(device_id, result.order_id).get("type", "-")
            self.outcomes[(kind, result.status, reason)] += 1

    def note_event(self, device_id: str, event: Event) -> None:
        self.events[(device_id, event.payment_id or "")].append(event.event)


@dataclass
class Scenario:
    """One scripted order and what must come of it: its results, then its payer's events."""

    at_s: float
    label: str
    payer: SimDevice
    send: Callable[[float], str]
    statuses: tuple[str, ...]
    events: tuple[str, ...] = ()
    decision: bool | None = None  # the owner's, when the order waits for approval
    order_id: str | None = None

    def observed(self, story: Story) -> tuple[list[str], list[str]]:
        """The results (repeats merged) and the payer's events about its payment."""
        key = (self.payer.device_id, self.order_id or "")
        statuses: list[str] = []
        for status in story.statuses.get(key, []):
            if not statuses or statuses[-1] != status:
                statuses.append(status)
        payment_id = story.payments.get(key)
        events = story.events.get((self.payer.device_id, payment_id), []) if payment_id else []
        return statuses, list(events)

    def matched(self, story: Story) -> bool:
        return self.observed(story) == (list(self.statuses), list(self.events))

    def finished(self, story: Story) -> bool:
        statuses, events = self.observed(story)
        if not statuses or statuses[-1] == PENDING:
            return False
        return statuses != list(self.statuses) or len(events) >= len(self.events)


def opening(fleet: Fleet) -> list[Scenario]:
    """The script: every outcome the contract describes, in the first seconds (the stations
    are set up for it: the pump's first customer gets a refund, the charger's leaves)."""
    car, other_car = [s for s in fleet.simulators if isinstance(s, Car)][:2]
    pump, charger = only(fleet, FuelPump), only(fleet, EvCharger)
    fridge, meter = only(fleet, Fridge), only(fleet, SmartMeter)
    for station in (pump, charger):
        station.session_s, station.refund_after_s = SESSION_S, 1.0
    pump.void_probability, pump.refund_probability = 0.0, 1.0  # changed when the script ends
    charger.void_probability = 1.0

    def shop(amount_minor: int, what: str) -> Callable[[float], str]:
        return lambda _now: fridge.send(pay_fields(fridge.grocer, amount_minor, CURRENCY, what))

    return [
        Scenario(0.0, "fuels under a hold; the pump captures, refunds a little",
                 car, lambda now: car.refuel(pump, now), ("approved",),
                 ("hold_captured", "refund_received")),
        Scenario(0.6, "leaves the charger without charging: hold voided",
                 other_car, lambda now: other_car.refuel(charger, now), ("approved",),
                 ("hold_voided",)),
        Scenario(1.2, "pays for parking", other_car,
                 lambda _now: other_car.pay_merchant("parking", 450, "2 h parking"),
                 ("approved",)),
        Scenario(1.8, "reorders milk", fridge, shop(2380, "milk, eggs, butter"),
                 ("approved",)),
        Scenario(2.4, "pays the month's electricity under its mandate", meter,
                 meter.act, ("approved",)),
        Scenario(3.0, "insurance above approval_above, covered by a mandate", car,
                 lambda _now: car.pay_merchant("insurance", 17500, "insurance renewal"),
                 ("approved",)),
        Scenario(3.6, "weekly shop: waits for the owner, who approves", fridge,
                 shop(12450, "weekly shop"), (PENDING, "approved"), decision=True),
        Scenario(4.2, "buys snacks: groceries are not among its categories",
                 other_car, lambda _now: other_car.pay_merchant("groceries", 3500, "snacks"),
                 ("declined category_not_allowed",)),
        Scenario(4.8, "party order: waits for the owner, who declines", fridge,
                 shop(18990, "party"), (PENDING, "declined approval_declined"), decision=False),
        Scenario(5.4, "pays a motorway toll", car,
                 lambda _now: car.pay_merchant("tolls", 820, "motorway toll"), ("approved",)),
    ]


class Script:
    """Sends each scenario at its time, and the rogue's tricks one after another."""

    def __init__(self, scenarios: list[Scenario], rogue: MisbehavingDevice,
                 plan: dict[str, bool]) -> None:
        self.scenarios, self.rogue, self.plan = scenarios, rogue, plan
        self._rogue_next = 0.3

    def run(self, elapsed_s: float, now: float) -> None:
        for scenario in self.scenarios:
            if scenario.order_id is None and elapsed_s >= scenario.at_s:
                scenario.order_id = scenario.send(now)
                if scenario.decision is not None:
                    self.plan[scenario.order_id] = scenario.decision
        if not self.rogue_done and not self.rogue.outstanding and elapsed_s >= self._rogue_next:
            self.rogue.act(now)
            self._rogue_next = elapsed_s + ROGUE_EVERY_S

    @property
    def rogue_done(self) -> bool:
        return {m for m, _ in self.rogue.refusals} >= set(self.rogue.mischief)

    def done(self, story: Story) -> bool:
        scenarios_done = all(s.order_id and s.finished(story) for s in self.scenarios)
        return scenarios_done and self.rogue_done and not self.rogue.outstanding


class Desk:
    """Plays the owners: decides each approval a moment after it shows; tops up low wallets."""

    def __init__(self, fleet: Fleet, plan: dict[str, bool], rng: random.Random,
                 say: Callable[[str], None], names: dict[str, str]) -> None:
        self.fleet, self.plan, self.rng, self.say, self.names = fleet, plan, rng, say, names
        self.waiting: dict[str, tuple[float, Owner, dict[str, Any]]] = {}
        self.decided: Counter[str] = Counter()
        self.topped_up = 0
        self._handled: dict[str, int] = {}

    def run(self, now: float) -> None:
        owners: dict[str, Owner] = {}
        for simulator in self.fleet.payers:
            if simulator.pending_seen > self._handled.get(simulator.device_id, 0):
                self._handled[simulator.device_id] = simulator.pending_seen
                owner = self.fleet.owners[simulator.device_id]
                owners[owner.id] = owner
        for owner in owners.values():
            for approval in owner.pending_approvals():
                self.waiting.setdefault(approval["id"], (now + DECIDE_AFTER_S, owner, approval))
        for approval_id, (at, owner, approval) in list(self.waiting.items()):
            if now >= at:
                del self.waiting[approval_id]
                self._decide(owner, approval)

    def _decide(self, owner: Owner, approval: dict[str, Any]) -> None:
        approve = self.plan.pop(approval["order_id"], None)
        if approve is None:
            approve = self.rng.random() < APPROVE_PROBABILITY
        try:
            owner.decide(approval["id"], approve)
        except ApiError as exc:
            if exc.status != 409:  # 409: decided or expired meanwhile
                raise
            return
        self.decided["approved" if approve else "declined"] += 1
        device = self.names.get(approval["device_id"], approval["device_id"])
        self.say(f"the owner {'approves' if approve else 'declines'} {device}'s order of "
                 f"{money(approval['amount'])}")

    def top_up(self, wallets: dict[str, Wallet]) -> None:
        for simulator in self.fleet.payers:
            full = TOP_UPS[simulator.kind]
            wallet = wallets.get(simulator.device_id)
            if wallet is None or wallet.available_minor >= full * TOP_UP_BELOW:
                continue
            self.topped_up += 1
            amount = full - wallet.available_minor
            owner = self.fleet.owners[simulator.device_id]
            owner.top_up(simulator.device_id, amount, CURRENCY, f"demo-{self.topped_up}")
            self.say(f"the owner tops up {self.names[simulator.device_id]} "
                     f"with {money(amount)}")


class View:
    """A line per result as it arrives; in a terminal, a footer with the balances below them."""

    def __init__(self, console: Console, names: dict[str, str], merchants: set[str],
                 story: Story, started: float, duration_s: float | None) -> None:
        self.console, self.names, self.merchants, self.story = console, names, merchants, story
        self.started, self.duration_s = started, duration_s
        self.wallets: dict[str, Wallet] = {}
        self.results = 0
        self.live: Live | None = None
        self._printed_balances_at = started

    def __enter__(self) -> View:
        if self.console.is_terminal:
            self.live = Live(self, console=self.console, refresh_per_second=4, transient=True)
            self.live.start()
        return self

    def __exit__(self, *_: object) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None

    def show_result(self, at: float, device_id: str, result: Result) -> None:
        self.results += 1
        order = self.story.order(device_id, result.order_id)
        kind = order.get("type", "?")
        amount = result.amount or order.get("amount")
        decision = Text(_decision(result.status, result.reason),
                        style=STYLES.get(result.status, ""))
        if result.duplicate:
            decision.append(" (a replay: the first answer again)", style="dim")
        elif result.status == PENDING:
            decision.append(" (the owner decides)", style="dim")
        line = self._stamp(at)
        line.append(f"{self._name(device_id):<12} {kind:<7} "
                    f"{money(amount) if amount else '':>13}  {self._counterpart(order):<17} ")
        self._print(line + decision)

    def say(self, text: str) -> None:
        self._print(self._stamp(time.monotonic()) + Text(text, style="bold"))

    def update(self, wallets: dict[str, Wallet], now: float) -> None:
        self.wallets = wallets
        if self.live is None and now - self._printed_balances_at >= PRINT_BALANCES_EVERY_S:
            self._printed_balances_at = now
            shown = ", ".join(f"{self._name(h)} {money(w.balance_minor)}"
                              for h, w in wallets.items())
            self._print(self._stamp(now) + Text(f"balances: {shown}", style="dim"))

    def __rich__(self) -> RenderableType:
        elapsed_s = time.monotonic() - self.started
        left = (f"; stops in {max(0.0, self.duration_s - elapsed_s):.0f} s"
                if self.duration_s is not None else "; Ctrl-C stops it and prints the summary")
        status = Text(f"{elapsed_s:.0f} s, {self.results} results{left}", style="dim")
        return Group(self._footer_table(), status)

    def _footer_table(self) -> Table:
        """The balances, devices beside merchants, to keep the footer short."""
        table = Table(box=None, title="Balances (held: reserved by open holds)",
                      title_justify="left", title_style="dim")
        for column in ("device", "balance", "held", "merchant", "balance"):
            table.add_column(column, justify="left" if column in ("device", "merchant")
                             else "right")
        devices = [(h, w) for h, w in self.wallets.items() if h not in self.merchants]
        merchants = [(h, w) for h, w in self.wallets.items() if h in self.merchants]
        for n in range(max(len(devices), len(merchants))):
            row = ["", "", ""]
            if n < len(devices):
                holder_id, wallet = devices[n]
                held = wallet.balance_minor - wallet.available_minor
                row = [self._name(holder_id), money(wallet.balance_minor),
                       money(held) if held else ""]
            if n < len(merchants):
                holder_id, wallet = merchants[n]
                row += [self._name(holder_id), money(wallet.balance_minor)]
            table.add_row(*row)
        return table

    def _name(self, holder_id: str | None) -> str:
        return self.names.get(holder_id or "", holder_id or "-")

    def _counterpart(self, order: dict[str, Any]) -> str:
        if "payee" in order:
            return f"-> {self._name(order['payee'])}"
        payer = self.story.payers.get(order.get("payment_id", ""))
        if payer is None:
            return ""
        return f"{'<-' if order.get('type') == 'capture' else '->'} {self._name(payer)}"

    def _stamp(self, at: float) -> Text:
        stamp = Text()
        stamp.append(f"{at - self.started:6.1f}s  ", style="dim")
        return stamp

    def _print(self, line: Text) -> None:
        console = self.live.console if self.live is not None else self.console
        console.print(line, soft_wrap=not console.is_terminal)


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
        self.view = View(console, self.names, set(fleet.merchants.values()), self.story,
                         self.started, None)
        self.desk = Desk(fleet, plan, random.Random(f"{seed}:owners"), self.view.say,
                         self.names)
        self.free = False  # whether the devices act by themselves yet
        self.stop = threading.Event()
        self._wallets_read_at = 0.0

    def introduce(self, tmp: str, startup_s: float) -> None:
        broker = "Mosquitto" if isinstance(self.running.ctx.broker, ManagedMosquitto) else \
            "the embedded broker"
        self.console.print(Text.assemble(
            ("KYM demo", "bold"),
            f": gateway in {tmp} (SQLite), {broker} on mqtts://{self.running.broker.host}:"
            f"{self.running.broker.port}, API on {self.running.api_url}; "
            f"{len(self.fleet.simulators)} devices and {len(self.fleet.merchants)} merchants "
            f"ready in {startup_s:.1f} s. A script plays first, then the devices act by "
            "themselves.",
        ), soft_wrap=not self.console.is_terminal)

    def play(self, duration_s: float | None) -> None:
        """Until `duration_s` has passed, or Ctrl-C; then let what is in flight finish."""
        self.started = self.view.started = time.monotonic()
        self.view.duration_s = duration_s
        with self.view, ctrl_c_sets(self.stop):
            while not self.stop.is_set() and (duration_s is None or
                                              self.elapsed_s() < duration_s):
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
        console = self.console
        console.rule(f"Summary after {elapsed_s:.0f} s")
        self._report_scenarios()
        console.print("Orders by status and reason (the final results devices got)",
                      style="bold")
        console.print(outcomes_table(self.story.outcomes))
        console.print(f"replays answered with their first result: {self.story.replays}; "
                      f"the owners approved {self.desk.decided['approved']} and declined "
                      f"{self.desk.decided['declined']} orders and topped up "
                      f"{self.desk.topped_up} wallets")
        console.print(f"latency to the first result: p50 {_ms(summary.latency_p50_ms)}, "
                      f"p99 {_ms(summary.latency_p99_ms)}; unanswered {summary.unanswered}, "
                      f"results the devices refused to believe {dropped}")
        console.print("Balances", style="bold")
        console.print(balances_table(read_wallets(db, self.names), self.names))
        self._report_rogue()
        problems = [f"ledger breach: {breach}" for breach in breaches]
        if bad_entry is not None:
            problems.append(f"audit chain broken at entry {bad_entry[0]}: {bad_entry[1]}")
        problems += [f"surprise: {surprise}" for surprise in summary.surprises]
        if dropped:
            problems.append(f"{dropped} results or events failed verification on a device")
        console.print("ledger: " + ("reconciled, every invariant holds" if not breaches else
                                    f"{len(breaches)} BREACHES"))
        console.print("audit chain: " + (f"intact, {entries} entries" if bad_entry is None
                                         else "BROKEN"))
        for problem in problems:
            console.print(Text(problem, style="bold red"), soft_wrap=True)
        return 1 if problems else 0

    def _report_scenarios(self) -> None:
        matched = sum(s.matched(self.story) for s in self.script.scenarios)
        self.console.print(f"The script: {matched} of {len(self.script.scenarios)} scenarios "
                           "as expected", style="bold")
        table = Table(show_header=False, box=None)
        for scenario in self.script.scenarios:
            statuses, events = scenario.observed(self.story)
            seen = " -> ".join(statuses + events) or (
                "not sent" if scenario.order_id is None else "no answer")
            mark = Text("ok", "green") if scenario.matched(self.story) else Text("--", "red")
            table.add_row(mark, self.names[scenario.payer.device_id], scenario.label, seen)
        self.console.print(table)

    def _report_rogue(self) -> None:
        refusals: Counter[tuple[str, str]] = Counter()
        for mischief, result in self.rogue.refusals:
            refusal = _decision(result.status, result.reason)
            refusals[(mischief, refusal + (", duplicate" if result.duplicate else ""))] += 1
        name = self.names[self.rogue.device_id]
        self.console.print(f"The misbehaving device ({name}): each trick and its refusal",
                           style="bold")
        table = Table(box=None)
        for column in ("trick", "answer", "times"):
            table.add_column(column, justify="right" if column == "times" else "left")
        for mischief in self.rogue.mischief:
            answers = [(a, n) for (m, a), n in sorted(refusals.items()) if m == mischief]
            for answer, count in answers or [("never tried", 0)]:
                table.add_row(mischief, answer, str(count))
        self.console.print(table)
        self.console.print(f"surprises of the misbehaving device: {len(self.rogue.surprises)}")

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
        return bool(self.fleet.recorder.open_orders or stations_busy or self.desk.waiting
                    or self.rogue.outstanding)


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
    names.update({merchant_id: MERCHANTS[category]
                  for category, merchant_id in fleet.merchants.items()})
    return names


def read_wallets(db: Database, holder_ids: dict[str, str]) -> dict[str, Wallet]:
    with db.read() as conn:
        wallets = {holder_id: get_wallet(conn, holder_id) for holder_id in holder_ids}
    return {holder_id: w for holder_id, w in wallets.items() if w is not None}


def balances_table(wallets: dict[str, Wallet], names: dict[str, str]) -> Table:
    table = Table(box=None)
    table.add_column("wallet")
    table.add_column("balance", justify="right")
    table.add_column("held", justify="right")
    for holder_id, wallet in wallets.items():
        held = wallet.balance_minor - wallet.available_minor
        table.add_row(names.get(holder_id, holder_id), money(wallet.balance_minor),
                      money(held) if held else "")
    return table


def outcomes_table(outcomes: Counter[tuple[str, str, str]]) -> Table:
    table = Table(box=None)
    for column in ("type", "status", "reason", "orders"):
        table.add_column(column, justify="right" if column == "orders" else "left")
    for (kind, status, reason), count in sorted(outcomes.items(), key=_outcome_order):
        table.add_row(kind, Text(status, STYLES.get(status, "")), reason, str(count))
    return table


def money(amount_minor: int) -> str:
    """Minor units as an amount for a person (every wallet here is in euros, two decimals)."""
    sign = "-" if amount_minor < 0 else ""
    units, cents = divmod(abs(amount_minor), 100)
    return f"{sign}{units:,}.{cents:02d} {CURRENCY}"


def only(fleet: Fleet, cls: type[T]) -> T:
    [found] = [s for s in fleet.simulators if isinstance(s, cls)]
    return found


def _decision(status: str, reason: str | None) -> str:
    return f"{status} {reason}" if reason else status


def _outcome_order(item: tuple[tuple[str, str, str], int]) -> tuple[int, str, str, str]:
    (kind, status, reason), _ = item
    statuses = list(STYLES)
    rank = statuses.index(status) if status in statuses else len(statuses)
    return rank, kind, reason, status


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

