"""The open-loop schedule and the latency percentiles, on an injected clock."""

from __future__ import annotations

from devices.sdk import Result
from simulators.metrics import Recorder, percentile
from simulators.population import OpenLoop


def test_the_open_loop_issues_every_arrival_on_time_whatever_the_answers() -> None:
    loop = OpenLoop(start=100.0, rate=10, duration_s=2)
    assert loop.total == 20
    assert loop.due(100.0) == 1  # the first arrival is at the start
    assert loop.due(100.05) == 0
    assert loop.due(100.35) == 3  # 100.1, 100.2, 100.3
    assert loop.max_lag_s == 0.25  # the one due at 100.1 went out at 100.35
    assert loop.due(200.0) == 16 and loop.next_at is None
    assert loop.issued == 20


def test_percentiles_are_nearest_rank() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


def test_the_recorder_measures_to_the_first_and_to_the_final_result() -> None:
    now = [0.0]
    recorder = Recorder(clock=lambda: now[0])
    recorder.sent("dev_1", "o-1")
    now[0] = 0.010
    recorder.result("dev_1", _result("o-1", "pending_approval"))
    now[0] = 2.0
    recorder.result("dev_1", _result("o-1", "approved"))
    recorder.result("dev_1", _result("o-1", "approved", duplicate=True))
    summary = recorder.summary(duration_s=1.0, arrivals=1)
    assert summary.latency_p50_ms == 10.0 and summary.final_latency_p50_ms == 2000.0
    assert summary.results == {"pending_approval": 1, "approved": 2}
    assert (summary.duplicates, summary.unanswered, summary.orders_sent) == (1, 0, 1)


def _result(order_id: str, status: str, duplicate: bool = False) -> Result:
    payload = {"order_id": order_id, "status": status, "duplicate": duplicate, "ts": 1}
    return Result.from_payload(payload)
