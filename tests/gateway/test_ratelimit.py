"""The per-device token bucket (CONTRACT.md section 10), on a clock the test moves."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from gateway.orders.ratelimit import RateLimiter, Verdict

ADMIT, NOTIFY, DROP = Verdict.ADMIT, Verdict.NOTIFY, Verdict.DROP


def test_a_burst_is_admitted_then_one_notice_and_silence() -> None:
    limiter = RateLimiter(rate_per_s=10, burst=50)
    verdicts = [limiter.take("dev_1", 100.0) for _ in range(80)]
    assert verdicts[:50] == [ADMIT] * 50
    assert verdicts[50:] == [NOTIFY] + [DROP] * 29


def test_the_bucket_refills_at_the_rate() -> None:
    limiter = RateLimiter(rate_per_s=10, burst=50)
    for _ in range(51):
        limiter.take("dev_1", 0.0)
    assert limiter.take("dev_1", 0.05) is DROP  # half a token
    assert limiter.take("dev_1", 0.1) is ADMIT  # a whole one (the half above was spent)
    assert limiter.take("dev_1", 0.1) is DROP
    assert [limiter.take("dev_1", 10.0) for _ in range(51)] == [ADMIT] * 50 + [NOTIFY]


def test_at_most_one_notice_a_second() -> None:
    limiter = RateLimiter(rate_per_s=1, burst=1)
    assert limiter.take("dev_1", 0.0) is ADMIT
    assert limiter.take("dev_1", 0.1) is NOTIFY
    assert limiter.take("dev_1", 1.0) is ADMIT  # a token again
    assert limiter.take("dev_1", 1.05) is DROP  # within the second of the notice
    assert limiter.take("dev_1", 1.1) is NOTIFY  # a new second


def test_devices_have_their_own_buckets() -> None:
    limiter = RateLimiter(rate_per_s=10, burst=5)
    flood = [limiter.take("flooder", 0.0) for _ in range(1000)]
    assert flood.count(ADMIT) == 5
    assert [limiter.take("other", 0.0) for _ in range(5)] == [ADMIT] * 5


def test_idle_buckets_are_forgotten_and_busy_ones_kept() -> None:
    limiter = RateLimiter(rate_per_s=10, burst=50, sweep_every_s=10)
    for n in range(1000):
        limiter.take(f"dev_{n}", 0.0)
    assert len(limiter) == 1000
    drained = [limiter.take("busy", 9.0) for _ in range(60)]
    assert drained.count(ADMIT) == 50
    assert limiter.take("busy", 10.0) is ADMIT  # a second of refill: 10 tokens, one taken
    assert len(limiter) == 1  # the others were full again: no bucket is the same as theirs
    assert [limiter.take("busy", 10.0) for _ in range(11)] == [ADMIT] * 9 + [NOTIFY, DROP]


def test_a_bucket_still_inside_its_notice_second_is_kept() -> None:
    limiter = RateLimiter(rate_per_s=1000, burst=1, sweep_every_s=0.5)
    limiter.take("dev_1", 0.0)
    assert limiter.take("dev_1", 0.0) is NOTIFY
    limiter.take("dev_2", 0.6)  # sweeps: dev_1 is full again but noticed 0.6 s ago
    assert limiter.take("dev_1", 0.6) is ADMIT
    assert limiter.take("dev_1", 0.6) is DROP  # no second notice within the second


@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "c"]), st.floats(0, 0.5)),
        max_size=400,
    )
)
def test_no_device_ever_gets_more_than_burst_plus_rate_times_time(
    arrivals: list[tuple[str, float]],
) -> None:
    """Over any run: admitted ≤ burst + rate × elapsed, and at most one notice per second."""
    rate, burst = 10.0, 5
    limiter, now_s = RateLimiter(rate, burst, sweep_every_s=1), 0.0
    admitted: Counter[str] = Counter()
    notices: dict[str, list[float]] = {}
    for device, gap_s in arrivals:
        now_s += gap_s
        verdict = limiter.take(device, now_s)
        admitted[device] += verdict is ADMIT
        if verdict is NOTIFY:
            notices.setdefault(device, []).append(now_s)
    for count in admitted.values():
        assert count <= burst + rate * now_s + 1e-9
    for times in notices.values():
        assert all(later - earlier >= 1.0 for earlier, later in pairwise(times))
