"""Is this machine's CPU steady? A fixed chunk of pure-Python work, timed over and over.

On a quiet machine every chunk should take about the same thread CPU time. Chunks that take
several times the median, in thread CPU time rather than wall time, mean the virtual CPU itself
ran slower (the host's doing: nothing in this VM is running then). A gateway's p99 cannot be
below what such windows add, so run this beside a latency benchmark before trusting its tail.

usage: python benchmarks/cpu_probe.py [--seconds 8] [--slow 3]
Pin one probe per core to see whether the windows hit every core at once:
    taskset -c 0 python benchmarks/cpu_probe.py & taskset -c 1 python benchmarks/cpu_probe.py
"""

from __future__ import annotations

import argparse
import json
import time


def chunk() -> int:
    total = 0
    for i in range(20_000):
        total += i * i
    return total


def probe(seconds: float) -> list[tuple[float, float]]:
    """(start offset in seconds, thread CPU milliseconds) of every chunk run for `seconds`."""
    samples = []
    began = time.perf_counter()
    while (start := time.perf_counter()) - began < seconds:
        cpu = time.thread_time()
        chunk()
        samples.append((start - began, (time.thread_time() - cpu) * 1000))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--slow", type=float, default=3.0, help="a chunk this many medians is slow")
    args = parser.parse_args()
    samples = probe(args.seconds)
    cpu = sorted(ms for _, ms in samples)
    median = cpu[len(cpu) // 2]
    slow = [(at, ms) for at, ms in samples if ms > args.slow * median]
    windows: list[list[float]] = []  # [first, last] of slow chunks less than 0.2 s apart
    for at, _ in slow:
        if windows and at - windows[-1][1] < 0.2:
            windows[-1][1] = at
        else:
            windows.append([at, at])
    report = {
        "chunks": len(samples),
        "median_cpu_ms": round(median, 3),
        "p99_cpu_ms": round(cpu[int(len(cpu) * 0.99)], 3),
        "max_cpu_ms": round(cpu[-1], 3),
        "slow_chunks": len(slow),
        "cpu_lost_share": round(sum(ms - median for _, ms in slow) / sum(cpu), 4),
        "slow_windows_at_s": [round(first, 2) for first, _ in windows],
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
