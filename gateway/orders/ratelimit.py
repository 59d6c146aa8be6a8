"""Per-device rate limits (CONTRACT.md section 10): a token bucket per device id.

Every message on a device's orders topic takes a token when the gateway receives it, valid or not;
the bucket holds `burst` tokens and refills at `rate_per_s`. A message without a token is not
decided: the first one refused in a second gets the device's one `rate_limited` result of that
second (`NOTIFY`), the others nothing (`DROP`). Each worker keeps its own limiter, so a device
gets at most the number of workers times its rate across the gateway, which the contract allows.

Memory stays bounded by the devices active lately: a bucket that has filled up again and whose
notice second is over is the same as no bucket, and is forgotten at the next sweep.

Pure: `now_s` (seconds on a monotonic clock) is a parameter.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

NOTICE_EVERY_S = 1.0  # at most one rate_limited result a second per device
SWEEP_EVERY_S = 10.0


class Verdict(Enum):
    """What to do with one message."""

    ADMIT = "admit"  # decide it
    NOTIFY = "notify"  # refused: answer it with the device's rate_limited result of this second
    DROP = "drop"  # refused: no result, no record


@dataclass(slots=True)
class _Bucket:
    tokens: float
    updated_s: float
    notified_s: float | None = None


class RateLimiter:
    """Token buckets by device id, `burst` deep, refilled at `rate_per_s`."""

    def __init__(self, rate_per_s: float, burst: int, sweep_every_s: float = SWEEP_EVERY_S) -> None:
        assert rate_per_s > 0 and burst >= 1, (rate_per_s, burst)
        self.rate_per_s, self.burst, self.sweep_every_s = rate_per_s, burst, sweep_every_s
        self._buckets: dict[str, _Bucket] = {}
        self._swept_s: float | None = None

    def __len__(self) -> int:
        return len(self._buckets)

    def take(self, device_id: str, now_s: float) -> Verdict:
        """Take a token for one message of `device_id` arriving at `now_s`."""
        self._sweep_if_due(now_s)
        bucket = self._buckets.get(device_id)
        if bucket is None:
            bucket = self._buckets[device_id] = _Bucket(float(self.burst), now_s)
        else:
            elapsed_s = max(0.0, now_s - bucket.updated_s)
            bucket.tokens = min(float(self.burst), bucket.tokens + elapsed_s * self.rate_per_s)
            bucket.updated_s = max(now_s, bucket.updated_s)
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return Verdict.ADMIT
        if bucket.notified_s is None or now_s - bucket.notified_s >= NOTICE_EVERY_S:
            bucket.notified_s = now_s
            return Verdict.NOTIFY
        return Verdict.DROP

    def _sweep_if_due(self, now_s: float) -> None:
        if self._swept_s is None:
            self._swept_s = now_s
        elif now_s - self._swept_s >= self.sweep_every_s:
            self._swept_s = now_s
            self._buckets = {d: b for d, b in self._buckets.items() if not self._idle(b, now_s)}

    def _idle(self, bucket: _Bucket, now_s: float) -> bool:
        refilled_s = bucket.updated_s + (self.burst - bucket.tokens) / self.rate_per_s
        noticed = bucket.notified_s is not None and now_s - bucket.notified_s < NOTICE_EVERY_S
        return now_s >= refilled_s and not noticed
