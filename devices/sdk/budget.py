"""What a device may still send: one token bucket for its new orders and its re-sends, so that
together they keep below the gateway's rate for the device (contract section 10: every message
on its orders topic counts, and what exceeds the rate is refused with `rate_limited`).

New orders come first: the application's orders always go at once and spend the budget (never
below empty, as the gateway's own bucket), and re-sends only take what they have left.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

SEND_PER_S = 8  # below the gateway's default sustained rate of 10 orders/s per device


class SendBudget:
    """Up to `per_s` messages a second, and at most `per_s` at once after a quiet while."""

    def __init__(self, per_s: float = SEND_PER_S, clock: Callable[[], float] = time.monotonic):
        assert per_s > 0
        self.per_s, self._clock = per_s, clock
        self._tokens, self._at = float(per_s), clock()
        self._lock = threading.Lock()

    def spend(self, count: int = 1) -> None:
        """Note `count` messages sent regardless (new orders)."""
        with self._lock:
            self._refill()
            self._tokens = max(0.0, self._tokens - count)

    def take(self, most: int) -> int:
        """Up to `most` whole messages that may go now (re-sends), taken from the budget."""
        with self._lock:
            self._refill()
            taken = max(0, min(most, int(self._tokens)))
            self._tokens -= taken
            return taken

    def give_back(self, count: int) -> None:
        """Return what `take` gave and was not used."""
        with self._lock:
            self._tokens = min(self.per_s, self._tokens + count)

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.per_s, self._tokens + (now - self._at) * self.per_s)
        self._at = now
