"""Moves money with ids derived from a counter, so that a restart re-sends the same ids.

    python tests/wallet/crash_worker.py DATABASE_URL TOTAL

`test_crash.py` kills it with SIGKILL at random moments (a random few milliseconds after a
random step it printed) and starts it again; every run begins at 0, so everything done before
the kill is sent again and must not move money twice. Step i: i % 10 == 9: a batch of three
pays in one transaction; i % 3 == 0: a hold, then its capture in another transaction; else a
pay. The plan is in `plan()` so that the test can compute the books.
"""

from __future__ import annotations

import contextlib
import sys
from datetime import UTC, datetime, timedelta

from sqlalchemy import Connection

from gateway.db import Database
from wallet import store
from wallet.errors import HoldNotOpen
from wallet.ledger import PaymentRequest, PaymentType

T0 = datetime(2030, 1, 1, tzinfo=UTC)
FUNDS_MINOR = 10_000_000


def plan(i: int) -> tuple[str, list[tuple[str, int]]]:
    """Step i: its kind and its (payment id, amount) pairs; a hold captures amount - 1."""
    if i % 10 == 9:
        return "batch", [(f"b{i}-{j}", 3 + j) for j in range(3)]
    if i % 3 == 0:
        return "hold", [(f"h{i}", 2 + i % 11)]
    return "pay", [(f"p{i}", 1 + i % 7)]


def request(kind: PaymentType, payment_id: str, amount_minor: int) -> PaymentRequest:
    expires_at = T0 + timedelta(days=1) if kind is PaymentType.HOLD else None
    return PaymentRequest(
        kind, payment_id, f"o-{payment_id}", "dev_a", "mer_x", amount_minor, "EUR", expires_at
    )


def step(db: Database, i: int) -> None:
    kind, payments = plan(i)
    if kind == "batch":
        requests = [request(PaymentType.PAY, pid, amount) for pid, amount in payments]
        db.run(lambda c: store.place_payments(c, requests, T0))
        return
    ((payment_id, amount),) = payments
    if kind == "pay":
        db.run(lambda c: store.place(c, request(PaymentType.PAY, payment_id, amount), T0))
        return
    db.run(lambda c: store.place(c, request(PaymentType.HOLD, payment_id, amount), T0))
    with contextlib.suppress(HoldNotOpen):  # captured by the run that was killed
        db.run(lambda c: store.capture(c, payment_id=payment_id, amount_minor=amount - 1, now=T0))


def main() -> None:
    url, total = sys.argv[1], int(sys.argv[2])
    db = Database(url)

    def setup(conn: Connection) -> None:
        for holder in ("dev_a", "mer_x"):
            store.open_wallet(conn, holder_id=holder, currency="EUR", now=T0)
        store.top_up(
            conn,
            holder_id="dev_a",
            amount_minor=FUNDS_MINOR,
            currency="EUR",
            idempotency_key="funds",
            now=T0,
        )

    db.run(setup)
    print("ready", flush=True)
    for i in range(total):
        step(db, i)
        print(f"step {i}", flush=True)  # the test kills it somewhere after a step it chose
    print("done", flush=True)


if __name__ == "__main__":
    main()
