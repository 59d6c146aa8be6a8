"""What PostgreSQL itself spends on a run: its backends' CPU and the WAL it writes.

`kym bench --json` reports the gateway's, the broker's and the load's CPU, not the database
server's; on a 2-core machine the server's share is what one payment costs beyond them. This
runs a command (a `kym bench` or the floor's `e2e_bench.py`) against database DB, samples the
CPU of every backend connected to DB (from /proc, so the server must run on this machine and
this user must read its processes) every 20 ms, and prints one JSON line last: `backend_cpu_s`,
`wal_bytes`, and the command's own last line as `run`.

usage: PYTHONPATH=. .venv/bin/python benchmarks/pg_backend_cpu.py --db sbs_kym -- \
           .venv/bin/kym bench --json --devices 20 --orders 8000 \
           --database-url postgresql+psycopg://postgres@127.0.0.1:5432/sbs_kym
(a fresh DB each run: `psql -h 127.0.0.1 -U postgres -c 'create database sbs_kym'`)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time

import psycopg

TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process, or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK  # fields 14 and 15 of stat(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", required=True, help="the database the command uses")
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    seen: dict[int, float] = {}
    with psycopg.connect(args.server, autocommit=True) as probe:
        start_lsn = probe.execute("SELECT pg_current_wal_lsn()").fetchone()[0]  # type: ignore[index]
        run = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        while run.poll() is None:
            pids = probe.execute(
                "SELECT pid FROM pg_stat_activity WHERE datname = %s", (args.db,)
            ).fetchall()
            for (pid,) in pids:
                used = cpu_seconds(pid)
                if used is not None:
                    seen[pid] = max(seen.get(pid, 0.0), used)
            time.sleep(0.02)
        wal = probe.execute(
            "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), %s)", (start_lsn,)
        ).fetchone()[0]  # type: ignore[index]
    out = (run.stdout.read() if run.stdout else "").strip().splitlines()
    last = out[-1] if out else "{}"
    print(
        json.dumps(
            {"backend_cpu_s": round(sum(seen.values()), 3), "backends": len(seen),
             "wal_bytes": int(wal), "run": json.loads(last)}
        )
    )  # fmt: skip


if __name__ == "__main__":
    main()
