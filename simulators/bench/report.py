"""The numbers of one `kym bench` run, and how they are shown."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console
from rich.table import Table


@dataclass(frozen=True)
class BenchReport:
    """What one run measured (latencies from handing an order to the SDK to its result)."""

    orders: int
    results: int  # final results received for those orders
    seconds: float  # from the first order sent to the last result received
    p50_ms: float | None
    p99_ms: float | None
    statuses: dict[str, int]

    @property
    def per_second(self) -> float:
        return self.results / self.seconds if self.seconds else 0.0

    @property
    def complete(self) -> bool:
        """Whether every order got its final result."""
        return self.results >= self.orders


def print_report(report: BenchReport, label: str, console: Console) -> None:
    """A table of the run's numbers."""
    table = Table(title=f"kym bench: {label}")
    for column in ("orders", "results", "seconds", "payments/s", "p50 ms", "p99 ms", "statuses"):
        table.add_column(column)
    table.add_row(
        str(report.orders),
        str(report.results),
        f"{report.seconds:.2f}",
        f"{report.per_second:.0f}",
        _ms(report.p50_ms),
        _ms(report.p99_ms),
        str(report.statuses),
    )
    console.print(table)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"
