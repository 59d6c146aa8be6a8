"""A collector that dies mid-collection: run as `python -m tests.funding.crash_collector URL
PLAN_ID N ISO_TIME`, it collects instalment N inside a transaction, prints `collected` with
what it moved, and then waits, uncommitted, for the SIGKILL the test sends it."""

from __future__ import annotations

import sys
from datetime import datetime

from gateway.db import Database
from gateway.funding.collect import collect_instalment
from wallet.schema import transfers


def main(url: str, plan_id: str, n: str, at: str) -> None:
    db = Database(url)
    with db.transaction() as conn:
        tried = collect_instalment(conn, plan_id, int(n), datetime.fromisoformat(at))
        moved = conn.execute(
            transfers.select().where(transfers.c.kind == "collect")
        ).all()  # fmt: skip
        print(f"collected {tried} {sum(row.amount_minor for row in moved)}", flush=True)
        sys.stdin.read()  # never returns: the test kills this process here


if __name__ == "__main__":
    main(*sys.argv[1:])
