"""How `kym bench` shows its numbers in a terminal."""

from __future__ import annotations

import io

from rich.console import Console

from simulators.bench.report import BenchReport, print_report


def test_the_report_fits_an_80_column_terminal_without_cutting_a_number() -> None:
    """A row of thirteen columns showed "17…" for 1734 payments/s and "{'…" for the statuses."""
    report = BenchReport(
        orders=500, results=500, seconds=0.288, p50_ms=13.24, p99_ms=18.43,
        statuses={"approved": 498, "declined": 2}, p95_ms=18.1, max_ms=18.92,
        cpu_s={"gateway": 0.31, "broker": 0.02, "load": 0.05},
        reasons={"insufficient_funds": 2},
    )  # fmt: skip
    out = io.StringIO()
    print_report(report, "20 devices, p256, auto broker, SQLite", Console(file=out, width=80))
    shown = out.getvalue()
    assert "…" not in shown, shown
    assert all(len(line) <= 80 for line in shown.splitlines()), shown
    for number in ("1736", "500 sent, 500 answered", "p50 13.2", "p99 18.4", "max 18.9"):
        assert number in shown, (number, shown)
    for part in ("gateway 0.3", "approved 498, declined 2", "insufficient_funds 2"):
        assert part in shown, (part, shown)
