"""What `kym bench` counts: when each order was due, its first result, replays and losses.

Thread-safe (results arrive on the bench's asyncio loop; progress may be read elsewhere).
Latency runs from the order's due time (the open-loop schedule's slot, or the moment it was
written to its connection when sending flat out) to its verified result, so a gateway that
falls behind shows as latency, never as a lower offered rate.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from devices.sdk import Result


@dataclass(frozen=True)
class Latencies:
    """Order-to-result latencies in milliseconds (None without any result)."""

    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None


class Tally:
    """Orders due and results received, by (device id, order id)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._due: dict[tuple[str, str], float] = {}
        self._answered: set[tuple[str, str]] = set()
        self._timeline: list[tuple[float, float]] = []  # (due, latency) of each first result
        self._statuses: Counter[str] = Counter()
        self._reasons: Counter[str] = Counter()
        self.duplicated = 0  # results beyond the first for one order
        self.strays = 0  # results for orders this run never sent
        self.last_result_at = 0.0

    def sent(self, device_id: str, order_id: str, due: float) -> None:
        with self._lock:
            self._due[(device_id, order_id)] = due

    def result(self, device_id: str, result: Result) -> None:
        """Record a verified result."""
        self.record(device_id, result)

    def record(self, device_id: str, result: Result) -> bool:
        """Record a verified result; whether it is its order's first final one."""
        now = self.clock()
        key = (device_id, result.order_id or "")
        with self._lock:
            self.last_result_at = now
            due = self._due.get(key)
            if due is None:
                self.strays += 1
            elif key in self._answered:
                self.duplicated += 1
            elif result.is_final:
                self._answered.add(key)
                self._timeline.append((due, now - due))
                self._statuses[result.status] += 1
                if result.reason:
                    self._reasons[result.reason] += 1
                return True
        return False

    @property
    def answered(self) -> int:
        with self._lock:
            return len(self._answered)

    @property
    def statuses(self) -> dict[str, int]:
        with self._lock:
            return dict(self._statuses)

    @property
    def reasons(self) -> dict[str, int]:
        with self._lock:
            return dict(self._reasons)

    def lost(self) -> int:
        """Orders sent without a final result."""
        with self._lock:
            return len(self._due) - len(self._answered)

    def latencies(self) -> Latencies:
        with self._lock:
            ordered = sorted(latency for _, latency in self._timeline)
        if not ordered:
            return Latencies(None, None, None, None)
        return Latencies(
            _rank(ordered, 50), _rank(ordered, 95), _rank(ordered, 99), ordered[-1] * 1000
        )

    def timeline(self) -> list[tuple[float, float, float]]:
        """(seconds from the first order due, latency in ms, Unix time due) of every answered
        order, in the order they were due: where in a run the slow ones were (the Unix time to
        set beside other records, e.g. `benchmarks/cpu_probe.py --epoch`)."""
        with self._lock:
            ordered = sorted(self._timeline)
        if not ordered:
            return []
        first, to_unix = ordered[0][0], time.time() - self.clock()
        return [(due - first, latency * 1000, due + to_unix) for due, latency in ordered]


def _rank(ordered: list[float], p: float) -> float:
    """The nearest-rank percentile of sorted seconds, in milliseconds."""
    rank = max(1, -(-len(ordered) * p // 100))
    return ordered[int(rank) - 1] * 1000
