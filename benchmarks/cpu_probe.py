"""Is this machine's CPU steady? A fixed chunk of pure-Python work, timed over and over.

On a quiet machine every chunk should take about the same thread CPU time. Chunks that take
several times the median, in thread CPU time rather than wall time, mean the virtual CPU itself
ran slower (the host's doing: nothing in this VM is running then). A gateway's p99 cannot be
below what such windows add, so run this beside a latency benchmark before trusting its tail.

usage: python benchmarks/cpu_probe.py [--seconds 8] [--slow 3] [--every-ms 0] [--epoch]
`--every-ms 20` runs a chunk every 20 ms only (about 5 % of a core), to run beside a benchmark;
`--epoch` prints the slow windows as Unix times, to set beside `kym bench --latencies`.
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


def probe(seconds: float, every_s: float = 0.0) -> list[tuple[float, float]]:
    """(start offset in seconds, thread CPU milliseconds) of every chunk run for `seconds`,
    one every `every_s` (0: back to back)."""
    samples = []
    began = time.perf_counter()
    while (start := time.perf_counter()) - began < seconds:
        cpu = time.thread_time()
        chunk()
        samples.append((start - began, (time.thread_time() - cpu) * 1000))
        if every_s:
            time.sleep(max(0.0, start + every_s - time.perf_counter()))
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--slow", type=float, default=3.0, help="a chunk this many medians is slow")
    parser.add_argument("--every-ms", type=float, default=0.0, help="one chunk this often")
    parser.add_argument("--epoch", action="store_true", help="slow windows as Unix times")
    args = parser.parse_args()
    began = time.time() if args.epoch else 0.0
    samples = probe(args.seconds, args.every_ms / 1000)
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
        "slow_windows_at_s": [round(began + first, 2) for first, _ in windows],
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
