"""CPU seconds of the processes in a `kym bench` run, read from /proc (Linux).

The gateway is the `kym serve` processes with their helper processes (`gateway.orders.verifier`
and `signer`); the broker is a Mosquitto they started (none with the embedded
broker, whose CPU is the gateway's); the load is this process.
"""

from __future__ import annotations

import os
import resource
from collections.abc import Iterable, Sequence
from pathlib import Path

HELPERS = ("gateway.orders.verifier", "gateway.orders.signer")  # `kym serve`'s child processes
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def process_cpu_s(pid: int) -> float | None:
    """User plus system CPU seconds of a live process (None when it is gone or unreadable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime, stime


def children_named(parent: int, name: str | None) -> list[int]:
    """Pids of the parent's direct children whose command is `name` (None: any)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm, rest = (entry / "stat").read_text().rsplit(")", 1)
        except OSError:
            continue
        if name in (None, comm.split("(", 1)[1]) and int(rest.split()[1]) == parent:
            found.append(int(entry.name))
    return found


def children_running(parent: int, module: str) -> list[int]:
    """Pids of the parent's direct children running `python -m module`."""
    found = []
    for pid in children_named(parent, None):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if module.encode() in argv:
            found.append(pid)
    return found


def own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    """CPU seconds spent between `start` and `stop` by gateway, broker and load."""

    def __init__(self, gateways: Sequence[int]) -> None:
        helpers = [
            pid
            for gateway in gateways
            for module in HELPERS
            for pid in children_running(gateway, module)
        ]
        self.gateways = list(gateways) + helpers
        self.brokers = [b for g in self.gateways for b in children_named(g, "mosquitto")]
        self._start: dict[str, float | None] = {}

    def sample(self) -> dict[str, float | None]:
        return {
            "gateway": _total(process_cpu_s(p) for p in self.gateways),
            "broker": _total(process_cpu_s(p) for p in self.brokers) if self.brokers else None,
            "load": own_cpu_s(),
        }

    def start(self) -> None:
        self._start = self.sample()

    def stop(self) -> dict[str, float | None]:
        spent: dict[str, float | None] = {}
        for name, value in self.sample().items():
            start = self._start.get(name)
            spent[name] = None if value is None or start is None else value - start
        return spent


def _total(values: Iterable[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return float(sum(found)) if found else None
