"""What a fleet saw: orders sent, results by status and reason, events, and latencies.

Thread-safe: devices report from their SDK dispatcher threads. The clock is injectable, and
latencies are measured from the moment an order was handed to the SDK (journaled, then
published) to the moment its verified result was handed back.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field

from devices.sdk import Event, Result


@dataclass(frozen=True)
class Summary:
    """The outcome of a run (money in minor units, times in seconds or milliseconds)."""

    duration_s: float
    arrivals: int  # actions the schedule asked for
    orders_sent: int  # orders the devices sent (follow-ups and mischief included)
    results: dict[str, int]  # every result by status, pending_approval included
    reasons: dict[str, int]  # declined and rejected results by reason
    events: dict[str, int]
    duplicates: int
    unanswered: int  # orders with no final result at the end
    latency_p50_ms: float | None  # order sent -> first result
    latency_p99_ms: float | None
    final_latency_p50_ms: float | None  # order sent -> final result (approvals included)
    final_latency_p99_ms: float | None
    dropped: int = 0  # results and events the devices refused to believe
    max_lag_ms: float = 0.0  # how far the open-loop schedule fell behind
    surprises: list[str] = field(default_factory=list)

    @property
    def achieved_rate(self) -> float:
        """Arrivals per second over the sending window."""
        return self.arrivals / self.duration_s if self.duration_s else 0.0

    def render(self) -> str:
        """A few lines for a person."""

        def ms(value: float | None) -> str:
            return "-" if value is None else f"{value:.1f} ms"

        lines = [
            f"{self.arrivals} arrivals in {self.duration_s:.1f} s ({self.achieved_rate:.1f}/s, "
            f"schedule lag up to {self.max_lag_ms:.0f} ms); {self.orders_sent} orders sent",
            f"latency to first result p50 {ms(self.latency_p50_ms)} "
            f"p99 {ms(self.latency_p99_ms)}; to final p50 {ms(self.final_latency_p50_ms)} "
            f"p99 {ms(self.final_latency_p99_ms)}",
            "results: " + _counts(self.results),
            "reasons: " + _counts(self.reasons),
            "events: " + _counts(self.events),
            f"duplicates {self.duplicates}, unanswered {self.unanswered}, "
            f"dropped {self.dropped}, surprises {len(self.surprises)}",
        ]
        return "\n".join(lines + [f"  surprise: {s}" for s in self.surprises[:10]])


class Recorder:
    """Collects what devices send and receive."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._sent_at: dict[tuple[str, str], float] = {}
        self._first: list[float] = []
        self._final: list[float] = []
        self._open: set[tuple[str, str]] = set()
        self._awaiting_first: set[tuple[str, str]] = set()
        self._sent = 0
        self._results: Counter[str] = Counter()
        self._reasons: Counter[str] = Counter()
        self._events: Counter[str] = Counter()
        self._duplicates = 0
        self._surprises: list[str] = []

    def sent(self, device_id: str, order_id: str) -> None:
        with self._lock:
            self._sent_at[(device_id, order_id)] = self.clock()
            self._open.add((device_id, order_id))
            self._awaiting_first.add((device_id, order_id))
            self._sent += 1

    def result(self, device_id: str, result: Result) -> None:
        now = self.clock()
        with self._lock:
            self._results[result.status] += 1
            if result.reason:
                self._reasons[result.reason] += 1
            if result.duplicate:
                self._duplicates += 1
                return
            key = (device_id, result.order_id or "")
            sent_at = self._sent_at.get(key)
            if sent_at is None:
                return
            if key in self._awaiting_first:
                self._first.append(now - sent_at)
                self._awaiting_first.discard(key)
            if result.is_final and key in self._open:
                self._final.append(now - sent_at)
                self._open.discard(key)
                self._sent_at.pop(key, None)

    def event(self, _device_id: str, event: Event) -> None:
        with self._lock:
            self._events[event.event] += 1

    def surprise(self, what: str) -> None:
        with self._lock:
            self._surprises.append(what)

    @property
    def open_orders(self) -> int:
        with self._lock:
            return len(self._open)

    def summary(
        self, duration_s: float, arrivals: int = 0, dropped: int = 0, max_lag_s: float = 0.0
    ) -> Summary:
        with self._lock:
            return Summary(
                duration_s=duration_s,
                arrivals=arrivals,
                orders_sent=self._sent,
                results=dict(self._results),
                reasons=dict(self._reasons),
                events=dict(self._events),
                duplicates=self._duplicates,
                unanswered=len(self._open),
                latency_p50_ms=_ms(percentile(self._first, 50)),
                latency_p99_ms=_ms(percentile(self._first, 99)),
                final_latency_p50_ms=_ms(percentile(self._final, 50)),
                final_latency_p99_ms=_ms(percentile(self._final, 99)),
                dropped=dropped,
                max_lag_ms=max_lag_s * 1000,
                surprises=list(self._surprises),
            )


def percentile(values: list[float], p: float) -> float | None:
    """The nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * p // 100))  # ceil(n * p / 100), at least 1
    return ordered[int(rank) - 1]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def _counts(counter: dict[str, int]) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(counter.items(), key=lambda kv: -kv[1])) or "-"
