"""How `kym demo` shows itself: a line per result as it arrives, a footer, and the summary.

In a terminal, a live footer holds the balances below the lines; without one (CI logs), the
balances come as a line now and then. The summary's parts are printed by `print_*` functions.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from devices.sdk import Result
from devices.sdk.messages import PENDING
from simulators.backoffice import Balance
from simulators.demo.funding import funded_note
from simulators.demo.script import Desk, Scenario, Story, decision_of, money
from simulators.metrics import Summary
from simulators.misbehaving import MisbehavingDevice

PRINT_BALANCES_EVERY_S = 10.0  # without a terminal (CI logs): balances as a line now and then
STYLES = {
    "approved": "green",
    "captured": "cyan",
    "voided": "cyan",
    "refunded": "cyan",
    PENDING: "yellow",
    "declined": "red",
    "rejected": "magenta",
}


@dataclass(frozen=True)
class Verdict:
    """What the operator's tools say at the end: `kym ledger check` and `kym audit verify`."""

    breaches: list[str]  # one line per ledger invariant that does not hold
    audit_entries: int
    audit_problem: str | None  # the first bad entry, named; None when the chain is intact


class View:
    """A line per result as it arrives; in a terminal, a footer with the balances below them."""

    def __init__(
        self,
        console: Console,
        names: dict[str, str],
        merchants: set[str],
        story: Story,
        started: float,
        duration_s: float | None,
    ) -> None:
        self.console, self.names, self.merchants, self.story = console, names, merchants, story
        self.started, self.duration_s = started, duration_s
        self.wallets: dict[str, Balance] = {}
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
        decision = Text(
            decision_of(result.status, result.reason), style=STYLES.get(result.status, "")
        )
        if result.funded_by and not result.duplicate:
            decision.append(f" ({funded_note(result.funded_by, self.names)})", style="dim")
        if result.duplicate:
            decision.append(" (a replay: the first answer again)", style="dim")
        elif result.status == PENDING:
            decision.append(" (the owner decides)", style="dim")
        line = self._stamp(at)
        line.append(
            f"{self._name(device_id):<12} {kind:<7} "
            f"{money(amount) if amount else '':>13}  {self._counterpart(order):<17} "
        )
        self._print(line + decision)

    def say(self, text: str) -> None:
        self._print(self._stamp(time.monotonic()) + Text(text, style="bold"))

    def update(self, wallets: dict[str, Balance], now: float) -> None:
        self.wallets = wallets
        if self.live is None and now - self._printed_balances_at >= PRINT_BALANCES_EVERY_S:
            self._printed_balances_at = now
            shown = ", ".join(
                f"{self._name(h)} {money(w.balance_minor)}" for h, w in wallets.items()
            )
            self._print(self._stamp(now) + Text(f"balances: {shown}", style="dim"))

    def __rich__(self) -> RenderableType:
        elapsed_s = time.monotonic() - self.started
        left = (
            f"; stops in {max(0.0, self.duration_s - elapsed_s):.0f} s"
            if self.duration_s is not None
            else "; Ctrl-C stops it and prints the summary"
        )
        status = Text(f"{elapsed_s:.0f} s, {self.results} results{left}", style="dim")
        return Group(self._footer_table(), status)

    def _footer_table(self) -> Table:
        """The balances, devices beside merchants, to keep the footer short."""
        table = Table(
            box=None,
            title="Balances (held: reserved by open holds)",
            title_justify="left",
            title_style="dim",
        )
        for column in ("device", "balance", "held", "merchant", "balance"):
            table.add_column(
                column, justify="left" if column in ("device", "merchant") else "right"
            )
        devices = [(h, w) for h, w in self.wallets.items() if h not in self.merchants]
        merchants = [(h, w) for h, w in self.wallets.items() if h in self.merchants]
        for n in range(max(len(devices), len(merchants))):
            row = ["", "", ""]
            if n < len(devices):
                holder_id, wallet = devices[n]
                held = wallet.balance_minor - wallet.available_minor
                row = [
                    self._name(holder_id),
                    money(wallet.balance_minor),
                    money(held) if held else "",
                ]
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
        if console.is_terminal:
            line = hanging(line, console, INDENT)
        console.print(line, soft_wrap=not console.is_terminal)


INDENT = 9  # a line's continuation starts under the device's name, right of the time


def hanging(line: Text, console: Console, indent: int) -> Text:
    """`line` wrapped at the console's width, its continuation lines indented: a result line
    that did not fit 80 columns went on at column 0, under the times ("idempotency_conflict"
    alone on a line, as if it were a line of its own)."""
    width = console.width
    if line.cell_len <= width:
        return line
    first = line.wrap(console, width)[0]
    first.rstrip()
    plain, cut = line.plain, len(first.plain)
    while cut < len(plain) and plain[cut] == " ":
        cut += 1
    rest = line[cut:].wrap(console, max(width - indent, 20))
    for part in rest:
        part.rstrip()
    return Text("\n").join([first, *(Text(" " * indent) + part for part in rest)])


def print_scenarios(
    console: Console, scenarios: list[Scenario], story: Story, names: dict[str, str]
) -> None:
    """Each scripted scenario, marked ok when what came of it is what it expected."""
    matched = sum(s.matched(story) for s in scenarios)
    console.print(f"The script: {matched} of {len(scenarios)} scenarios as expected", style="bold")
    table = Table(show_header=False, box=None)
    for scenario in scenarios:
        statuses, events = scenario.observed(story)
        seen = " -> ".join(statuses + events) or (
            "not sent" if scenario.order_id is None else "no answer"
        )
        mark = Text("ok", "green") if scenario.matched(story) else Text("--", "red")
        table.add_row(mark, names[scenario.payer.device_id], scenario.label, seen)
    console.print(table)


def print_orders(
    console: Console, story: Story, desk: Desk, summary: Summary, dropped: int
) -> None:
    """The final results by status and reason; replays, the owners' work and latency."""
    console.print("Orders by status and reason (the final results devices got)", style="bold")
    console.print(outcomes_table(story.outcomes))
    console.print(
        f"replays answered with their first result: {story.replays}; "
        f"the owners approved {desk.decided['approved']} and declined "
        f"{desk.decided['declined']} orders and topped up "
        f"{desk.topped_up} wallets"
    )
    console.print(
        f"approvals decided from the owners' event streams: {desk.inbox.pending_events} "
        f"approval.pending events over {desk.inbox.connections} connections, no polling"
    )
    console.print(
        f"latency to the first result: p50 {_ms(summary.latency_p50_ms)}, "
        f"p99 {_ms(summary.latency_p99_ms)}; unanswered {summary.unanswered}, "
        f"results the devices refused to believe {dropped}"
    )


def print_rogue(console: Console, rogue: MisbehavingDevice, names: dict[str, str]) -> None:
    """Each trick of the misbehaving device and the refusals it got."""
    refusals: Counter[tuple[str, str]] = Counter()
    for mischief, result in rogue.refusals:
        refusal = decision_of(result.status, result.reason)
        refusals[(mischief, refusal + (", duplicate" if result.duplicate else ""))] += 1
    name = names[rogue.device_id]
    console.print(f"The misbehaving device ({name}): each trick and its refusal", style="bold")
    table = Table(box=None)
    for column in ("trick", "answer", "times"):
        table.add_column(column, justify="right" if column == "times" else "left")
    for mischief in rogue.mischief:
        answers = [(a, n) for (m, a), n in sorted(refusals.items()) if m == mischief]
        for answer, count in answers or [("never tried", 0)]:
            table.add_row(mischief, answer, str(count))
    console.print(table)
    console.print(f"surprises of the misbehaving device: {len(rogue.surprises)}")


def print_verdict(console: Console, verdict: Verdict, problems: list[str]) -> None:
    """The ledger's and the audit chain's state, then every problem found."""
    breaches = verdict.breaches
    console.print(
        "ledger: "
        + ("reconciled, every invariant holds" if not breaches else f"{len(breaches)} BREACHES")
    )
    intact = verdict.audit_problem is None
    console.print(
        "audit chain: " + (f"intact, {verdict.audit_entries} entries" if intact else "BROKEN")
    )
    for problem in problems:
        console.print(Text(problem, style="bold red"), soft_wrap=True)


def balances_table(wallets: dict[str, Balance], names: dict[str, str]) -> Table:
    table = Table(box=None)
    table.add_column("wallet")
    table.add_column("balance", justify="right")
    table.add_column("held", justify="right")
    for holder_id, wallet in wallets.items():
        held = wallet.balance_minor - wallet.available_minor
        table.add_row(
            names.get(holder_id, holder_id),
            money(wallet.balance_minor),
            money(held) if held else "",
        )
    return table


def outcomes_table(outcomes: Counter[tuple[str, str, str]]) -> Table:
    table = Table(box=None)
    for column in ("type", "status", "reason", "orders"):
        table.add_column(column, justify="right" if column == "orders" else "left")
    for (kind, status, reason), count in sorted(outcomes.items(), key=_outcome_order):
        table.add_row(kind, Text(status, STYLES.get(status, "")), reason, str(count))
    return table


def _outcome_order(item: tuple[tuple[str, str, str], int]) -> tuple[int, str, str, str]:
    (kind, status, reason), _ = item
    statuses = list(STYLES)
    rank = statuses.index(status) if status in statuses else len(statuses)
    return rank, kind, reason, status


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"
