"""`kym serve` freezes what its start-up made (gateway.mqtt.workers.settle_heap); tried in a
child process, since frozen objects are never collected and a test run must not keep them."""

from __future__ import annotations

import subprocess
import sys

CHILD = """
import gc
from gateway.mqtt.workers import GC_THRESHOLDS, settle_heap
made_at_start = [[n] for n in range(1000)]
settle_heap()
assert gc.get_freeze_count() > 1000, gc.get_freeze_count()
assert gc.get_threshold() == GC_THRESHOLDS, gc.get_threshold()
later = [[n] for n in range(10)]
assert all(gc.is_tracked(x) for x in later)
assert gc.collect() >= 0  # a full collection still runs, over what came after
print("ok")
"""


def test_settle_heap_freezes_the_start_up_and_collects_the_young_less_often() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
