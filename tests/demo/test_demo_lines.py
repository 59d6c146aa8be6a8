"""How `kym demo` prints a line that does not fit the terminal."""

from __future__ import annotations

import io
import time

from rich.console import Console

from simulators.demo.script import Story
from simulators.demo.view import View


def test_a_line_too_long_for_80_columns_goes_on_indented_under_the_device_names() -> None:
    """It went on at column 0, under the times, as if it were a line of its own."""
    out = io.StringIO()
    console = Console(file=out, width=80, force_terminal=True, color_system=None)
    view = View(console, {}, set(), Story(), started=time.monotonic(), duration_s=None)
    view.say(
        "the owner accepts the instalment offer for car-0's 480.00 EUR: 6 of 83.90 EUR "
        "every 30 days, fee 23.43 EUR, total 503.43 EUR, first due 2026-12-31"
    )
    first, *rest = out.getvalue().splitlines()
    assert first.endswith("6 of") and len(rest) == 2, out.getvalue()
    assert all(len(line) <= 80 for line in (first, *rest)), out.getvalue()
    assert all(line.startswith(" " * 9) and line[9] != " " for line in rest), out.getvalue()
    assert rest[-1].strip() == "2026-12-31"
