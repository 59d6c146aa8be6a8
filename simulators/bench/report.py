"""The numbers of one `kym bench` run, and how they are shown (a table, or one JSON line)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class BenchReport:
    """What one run measured. Latencies run from an order's scheduled send time (open loop,
    `--rate`) or its hand-over to the SDK (flat out) to its verified result."""

    orders: int
    results: int  # orders that got their final result
    seconds: float  # from the first order sent to the last result received
    p50_ms: float | None
    p99_ms: float | None
    statuses: dict[str, int]
    p95_ms: float | None = None
    max_ms: float | None = None
    lost: int = 0  # orders sent that never got a result
    duplicated: int = 0  # results beyond the first for one order
    forged: int = 0  # results and events whose signature did not verify (checked after the run)
    cpu_s: dict[str, float | None] = field(default_factory=dict)  # process -> CPU seconds
    offered_per_s: float | None = None  # orders sent per second over the sending window
    settings: dict[str, Any] = field(default_factory=dict)  # what was run
    reasons: dict[str, int] = field(default_factory=dict)  # declined and rejected, by reason
    # (seconds from the first order, latency in ms, Unix time) per answered order; not in JSON
    timeline: list[tuple[float, float, float]] = field(default_factory=list, repr=False)

    @property
    def per_second(self) -> float:
        return self.results / self.seconds if self.seconds else 0.0

    @property
    def complete(self) -> bool:
        """Whether every order got its final result, and every message was the gateway's."""
        return self.results >= self.orders and self.forged == 0

    def write_timeline(self, path: Path) -> None:
        """Every answered order's send time and latency as CSV (`kym bench --latencies`)."""
        with path.open("w") as out:
            out.write("sent_s,latency_ms,sent_unix\n")
            out.writelines(f"{s:.4f},{ms:.3f},{unix:.4f}\n" for s, ms, unix in self.timeline)

    def to_json(self) -> str:
        """One line for scripts (`kym bench --json`)."""
        return json.dumps(
            {
                "payments_per_s": round(self.per_second, 1),
                "p50_ms": _round(self.p50_ms),
                "p95_ms": _round(self.p95_ms),
                "p99_ms": _round(self.p99_ms),
                "max_ms": _round(self.max_ms),
                "orders": self.orders,
                "results": self.results,
                "lost": self.lost,
                "duplicated": self.duplicated,
                "forged": self.forged,
                "statuses": self.statuses,
                "reasons": self.reasons,
                "cpu_s": {k: _round(v) for k, v in self.cpu_s.items()},
                "seconds": round(self.seconds, 3),
                "offered_per_s": _round(self.offered_per_s),
                **self.settings,
            },
            sort_keys=False,
        )


def print_report(report: BenchReport, label: str, console: Console) -> None:
    """The run's numbers, a row each: in an 80-column terminal a row of thirteen columns left
    every number cut to its first digits ("17…")."""
    table = Table(title=f"kym bench: {label}", title_justify="left", show_header=False)
    table.add_column("measure", style="bold", no_wrap=True)
    table.add_column("value")
    latency = (("p50", report.p50_ms), ("p95", report.p95_ms), ("p99", report.p99_ms))
    rows = {
        "payments/s": f"{report.per_second:.0f}",
        "orders": f"{report.orders} sent, {report.results} answered (lost {report.lost}, "
        f"duplicated {report.duplicated}, forged {report.forged})",
        "seconds": f"{report.seconds:.2f}",
        "latency ms": "  ".join(f"{k} {_ms(v)}" for k, v in (*latency, ("max", report.max_ms))),
        "CPU s": "  ".join(f"{k} {_ms(v)}" for k, v in report.cpu_s.items()) or "-",
        "statuses": ", ".join(f"{k} {n}" for k, n in report.statuses.items()) or "-",
    }
    if report.reasons:
        rows["reasons"] = ", ".join(f"{k} {n}" for k, n in report.reasons.items())
    for measure, value in rows.items():
        table.add_row(measure, value)
    console.print(table)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
