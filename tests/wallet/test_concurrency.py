"""Eight threads spend one wallet on PostgreSQL at READ COMMITTED: no cent is lost or invented.

The conditional UPDATE is the only thing between the threads and an overdraft, so these tests
fund a wallet for exactly N payments and count that exactly N succeed.
"""

from __future__ import annotations

import functools
import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import Connection, text

from gateway.db import Database
from tests.support.services import postgres_schema_url
from tests.support.wallets import T0, assert_books_balance, later
from wallet import store
from wallet.errors import HoldExpired, HoldNotOpen, InsufficientFunds
from wallet.ledger import Wallet

pytestmark = [pytest.mark.postgres, pytest.mark.slow]
THREADS = 8


@pytest.fixture(autouse=True)
def quick_thread_switches() -> Iterator[None]:
    """Hand the GIL over sooner: a thread holding a row lock then waits less for its turn."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0002)
    yield
    sys.setswitchinterval(interval)


@pytest.fixture
def pg(postgres_database: str) -> Iterator[Database]:
    """A fresh PostgreSQL schema with dev_a and mer_x open."""
    db = Database(postgres_schema_url(postgres_database))
    db.migrate()
    with db.transaction() as conn:
        for holder in ("dev_a", "mer_x"):
            store.open_wallet(conn, holder_id=holder, currency="EUR", now=T0)
    yield db
    db.dispose()


def deadlocks(db: Database) -> int:
    """Deadlocks PostgreSQL has detected in this database (counted when backends report)."""
    db.dispose()  # ending the backends makes them report their statistics
    time.sleep(0.2)
    with db.read() as conn:
        return int(
            conn.execute(
                text("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")
            ).scalar_one()
        )


def fund(db: Database, amount_minor: int) -> None:
    db.run(
        lambda c: store.top_up(
            c,
            holder_id="dev_a",
            amount_minor=amount_minor,
            currency="EUR",
            idempotency_key="fund",
            now=T0,
        )
    )


def wallet(db: Database, holder_id: str) -> Wallet:
    with db.read() as conn:
        found = store.get_wallet(conn, holder_id)
    assert found is not None
    return found


def test_concurrent_pays_spend_exactly_the_funds(pg: Database) -> None:
    amount, affordable, attempts = 7, 1500, 2000
    fund(pg, amount * affordable)

    def pay(n: int) -> str:
        try:
            pg.run(
                lambda c: store.pay(
                    c,
                    payer_id="dev_a",
                    payee_id="mer_x",
                    amount_minor=amount,
                    currency="EUR",
                    payment_id=f"pay_{n}",
                    order_id=f"o-{n}",
                    now=T0,
                )
            )
        except InsufficientFunds:
            return "refused"
        return "paid"

    with ThreadPoolExecutor(THREADS) as pool:
        outcomes = Counter(pool.map(pay, range(attempts)))
    assert outcomes == {"paid": affordable, "refused": attempts - affordable}
    assert wallet(pg, "dev_a") == Wallet("dev_a", "EUR", 0, 0)
    assert wallet(pg, "mer_x").balance_minor == amount * affordable
    assert_books_balance(pg)


def test_concurrent_holds_captures_voids_and_refunds_keep_exact_books(pg: Database) -> None:
    funded = 200_000
    fund(pg, funded)
    before = deadlocks(pg)
    lock = threading.Lock()
    moved: Counter[str] = Counter()  # what the threads saw reach the merchant, in minor units

    def pay_or_hold(rng: random.Random, payment_id: str, amount: int) -> int:
        if rng.random() < 0.5:
            pg.run(
                lambda c: store.pay(
                    c,
                    payer_id="dev_a",
                    payee_id="mer_x",
                    amount_minor=amount,
                    currency="EUR",
                    payment_id=payment_id,
                    order_id=payment_id,
                    now=T0,
                )
            )
            return amount
        pg.run(
            lambda c: store.hold(
                c,
                payer_id="dev_a",
                payee_id="mer_x",
                amount_minor=amount,
                currency="EUR",
                payment_id=payment_id,
                order_id=payment_id,
                expires_at=later(600),
                now=T0,
            )
        )
        if rng.random() < 0.3:
            pg.run(lambda c: store.void(c, payment_id=payment_id, now=T0))
            return 0
        captured = rng.randint(1, amount)
        pg.run(lambda c: store.capture(c, payment_id=payment_id, amount_minor=captured, now=T0))
        return captured

    def refund(rng: random.Random, payment_id: str, paid: int) -> int:
        back = rng.randint(1, paid)
        pg.run(lambda c: store.refund(c, payment_id=payment_id, amount_minor=back, now=T0))
        return back

    def work(seed: int) -> None:
        rng = random.Random(seed)
        for n in range(80):
            payment_id = f"p{seed}-{n}"
            try:
                paid = pay_or_hold(rng, payment_id, rng.randint(1, 900))
                if paid and rng.random() < 0.3:
                    paid -= refund(rng, payment_id, paid)
            except InsufficientFunds:
                paid = 0
            with lock:
                moved["to merchant"] += paid

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(work, range(THREADS)))
    merchant, payer = wallet(pg, "mer_x"), wallet(pg, "dev_a")
    assert merchant.balance_minor == moved["to merchant"]
    assert payer == Wallet(
        "dev_a", "EUR", funded - moved["to merchant"], funded - moved["to merchant"]
    )
    assert_books_balance(pg)
    assert deadlocks(pg) == before


def test_racing_capture_void_and_expiry_of_a_hold_let_exactly_one_win(pg: Database) -> None:
    fund(pg, 100_000)
    for n in range(40):
        payment_id = f"h{n}"
        pg.run(
            functools.partial(
                store.hold,
                payer_id="dev_a",
                payee_id="mer_x",
                amount_minor=1000,
                currency="EUR",
                payment_id=payment_id,
                order_id=payment_id,
                expires_at=later(60),
                now=T0,
            )
        )
        winners = race(pg, payment_id)
        with pg.read() as conn:
            payment = store.get_payment(conn, payment_id)
        assert payment is not None and winners == [payment.status.value], winners
    assert wallet(pg, "dev_a").available_minor == wallet(pg, "dev_a").balance_minor
    assert_books_balance(pg)


def race(pg: Database, payment_id: str) -> list[str]:
    """Capture, void and the expiry sweep start together on one hold; who won?"""
    contenders: dict[str, Callable[[Connection], Any]] = {
        "captured": lambda c: store.capture(c, payment_id=payment_id, amount_minor=400, now=T0),
        "voided": lambda c: store.void(c, payment_id=payment_id, now=T0),
        "expired": lambda c: store.expire_due_holds(c, later(61)),
    }
    barrier, winners = threading.Barrier(len(contenders)), []

    def contend(status: str) -> None:
        barrier.wait()
        try:
            result = pg.run(contenders[status])
        except (HoldNotOpen, HoldExpired):
            return
        if status != "expired" or [p.payment_id for p in result] == [payment_id]:
            winners.append(status)

    threads = [threading.Thread(target=contend, args=(status,)) for status in contenders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return winners


def test_transfers_in_opposite_directions_never_deadlock(pg: Database) -> None:
    with pg.transaction() as conn:
        store.top_up(
            conn,
            holder_id="mer_x",
            amount_minor=10**6,
            currency="EUR",
            idempotency_key="fund",
            now=T0,
        )
    fund(pg, 10**6)
    before = deadlocks(pg)

    def pay(n: int) -> None:
        payer, payee = ("dev_a", "mer_x") if n % 2 else ("mer_x", "dev_a")
        pg.run(
            lambda c: store.pay(
                c,
                payer_id=payer,
                payee_id=payee,
                amount_minor=1 + n % 5,
                currency="EUR",
                payment_id=f"p{n}",
                order_id=f"o{n}",
                now=T0,
            )
        )

    with ThreadPoolExecutor(THREADS) as pool:
        list(pool.map(pay, range(800)))
    # Both accounts are locked in id order whichever way the money goes; 40P01 would show here.
    assert deadlocks(pg) == before
    assert wallet(pg, "dev_a").balance_minor + wallet(pg, "mer_x").balance_minor == 2 * 10**6
    assert_books_balance(pg)
