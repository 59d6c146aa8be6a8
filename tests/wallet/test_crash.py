"""A process moving money is killed with SIGKILL at random moments and started again.

Every restart re-sends the same payment ids from the beginning (as a gateway re-delivers orders
after a crash). Afterwards the books reconcile, every planned transfer is in the journal exactly
once, and the balances are exactly what the plan says: nothing lost, nothing applied twice.
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import func, select

from gateway.db import Database
from tests.support.services import postgres_schema_url
from tests.support.wallets import assert_books_balance
from tests.wallet import crash_worker
from wallet import schema, store

WORKER = Path(crash_worker.__file__)
KILLS = 5


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend, total",
    [
        ("sqlite", 1200),
        pytest.param("postgres", 400, marks=pytest.mark.postgres),
    ],
)
def test_a_killed_mover_applies_each_transfer_exactly_once(
    backend: str, total: int, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'crash.db'}"
    else:
        url = postgres_schema_url(request.getfixturevalue("postgres_database"))
    db = Database(url)
    request.addfinalizer(db.dispose)  # also when an assertion fails: no pooled connection leaks
    db.migrate()
    rng = random.Random()
    interrupted = 0
    for _ in range(KILLS):
        worker = subprocess.Popen(
            [sys.executable, str(WORKER), url, str(total)], stdout=subprocess.PIPE, text=True
        )
        assert worker.stdout is not None
        assert worker.stdout.readline().strip() == "ready"
        # Somewhere in the run, however fast the ledger is: after a random step, a random
        # moment later (inside the next step's transaction, or between two).
        kill_after = rng.randrange(total * 9 // 10)
        while (line := worker.stdout.readline()) and line.strip() != f"step {kill_after}":
            pass
        assert line, f"the worker stopped before step {kill_after}"
        time.sleep(rng.uniform(0, 0.005))
        interrupted += worker.poll() is None
        worker.kill()
        worker.wait()
        worker.stdout.close()
        assert_books_balance(db)
    finished = subprocess.run(
        [sys.executable, str(WORKER), url, str(total)], capture_output=True, text=True, timeout=240
    )
    assert finished.returncode == 0, finished.stderr
    assert finished.stdout.splitlines()[0] == "ready" and finished.stdout.endswith("done\n")
    assert interrupted >= KILLS - 1, "the worker finished before it could be killed"
    assert_books_balance(db)
    assert journal_counts(db) == expected_counts(total)
    spent = sum(
        amount - (kind == "hold")
        for i in range(total)
        for kind, payments in [crash_worker.plan(i)]
        for _, amount in payments
    )
    with db.read() as conn:
        payer, payee = store.get_wallet(conn, "dev_a"), store.get_wallet(conn, "mer_x")
    assert payer is not None and payee is not None
    assert (payer.balance_minor, payer.available_minor) == (
        crash_worker.FUNDS_MINOR - spent,
        crash_worker.FUNDS_MINOR - spent,
    )
    assert payee.balance_minor == spent


def journal_counts(db: Database) -> Counter[tuple[str | None, str]]:
    t = schema.transfers.c
    with db.read() as conn:
        rows = conn.execute(
            select(t.payment_id, t.kind, func.count()).group_by(t.payment_id, t.kind)
        ).all()
    return Counter({(payment_id, kind): count for payment_id, kind, count in rows})


def expected_counts(total: int) -> Counter[tuple[str | None, str]]:
    expected: Counter[tuple[str | None, str]] = Counter({(None, "top_up"): 1})
    for i in range(total):
        kind, payments = crash_worker.plan(i)
        for payment_id, _ in payments:
            if kind == "hold":
                expected[payment_id, "hold"] += 1
                expected[payment_id, "capture"] += 1
            else:
                expected[payment_id, "pay"] += 1
    return expected
