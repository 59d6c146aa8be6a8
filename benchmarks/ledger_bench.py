"""How many ledger transfers per second commit, one per transaction and in batches.

    .venv/bin/python benchmarks/ledger_bench.py            # a temp SQLite file + local PostgreSQL
    .venv/bin/python benchmarks/ledger_bench.py --database-url sqlite:////tmp/bench.db --n 5000

Each run uses a fresh database (SQLite: a temp file; PostgreSQL: a new schema, dropped at the
end), migrates it, funds ten payer wallets and measures: pays one per transaction, pays in
batches (`store.place_payments`, one commit per batch), and holds each captured in its own
transaction. Commits are durable (SQLite WAL synchronous=NORMAL, PostgreSQL defaults). A single
writer thread: this measures the cost of the statements and the commits, not contention.
Statements are counted at the driver, not counting BEGIN, COMMIT and the pool's pre-ping
(SQLite reports an executemany once per row: the batch's one journal INSERT shows as 1 a row).
"""

from __future__ import annotations

import argparse
import functools
import secrets
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from sqlalchemy import create_engine, event, text

from gateway.db import Database
from wallet import store
from wallet.ledger import PaymentRequest, PaymentType

DEFAULT_POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
T0 = datetime(2030, 1, 1, tzinfo=UTC)
PAYERS = [f"dev_bench_{n}" for n in range(10)]
PAYEE = "mer_bench"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--database-url",
        action="append",
        dest="urls",
        help="SQLAlchemy URL (repeatable); default: temp SQLite and " + DEFAULT_POSTGRES,
    )
    parser.add_argument("--n", type=int, default=2000, help="transfers per measurement")
    parser.add_argument("--batch", type=int, default=100, help="payments per batch")
    args = parser.parse_args()
    rows = []
    for url in args.urls or ["sqlite", DEFAULT_POSTGRES]:
        with fresh_database(url) as db:
            rows.extend(measure(db, args.n, args.batch))
    print(
        f"{'database':<10} {'what':<32} {'transfers':>9} {'seconds':>8} "
        f"{'transfers/s':>11} {'stmts/transfer':>14}"
    )
    for name, what, count, seconds, statements in rows:
        print(
            f"{name:<10} {what:<32} {count:>9} {seconds:>8.2f} {count / seconds:>11.0f} "
            f"{statements / count:>14.1f}"
        )


@contextmanager
def fresh_database(url: str) -> Iterator[Database]:
    """A migrated, empty database: a temp SQLite file, or a new PostgreSQL schema."""
    if url == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            db = Database(f"sqlite:///{Path(tmp) / 'bench.db'}")
            db.migrate()
            yield db
            db.dispose()
        return
    if url.startswith("sqlite"):
        db = Database(url)
        db.migrate()
        yield db
        db.dispose()
        return
    schema = f"bench_{secrets.token_hex(4)}"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    separator = "&" if "?" in url else "?"
    db = Database(f"{url}{separator}options=-csearch_path%3D{schema}")
    try:
        db.migrate()
        yield db
    finally:
        db.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def measure(db: Database, n: int, batch: int) -> list[tuple[str, str, int, float, int]]:
    name = "sqlite" if db.is_sqlite else "postgresql"
    with db.transaction() as conn:
        store.open_wallet(conn, holder_id=PAYEE, currency="EUR", now=T0)
        for payer in PAYERS:
            store.open_wallet(conn, holder_id=payer, currency="EUR", now=T0)
            store.top_up(
                conn,
                holder_id=payer,
                amount_minor=10**12,
                currency="EUR",
                idempotency_key="bench",
                now=T0,
            )
    ids = iter(range(10**9))

    def request(kind: PaymentType = PaymentType.PAY) -> PaymentRequest:
        n_ = next(ids)
        return PaymentRequest(
            kind,
            f"pay_{n_}",
            f"o_{n_}",
            PAYERS[n_ % len(PAYERS)],
            PAYEE,
            1 + n_ % 500,
            "EUR",
            T0 + timedelta(hours=1) if kind is PaymentType.HOLD else None,
        )

    def one_per_transaction() -> int:
        for _ in range(n):
            db.run(lambda c: store.place(c, request(), T0))
        return n

    def batched() -> int:
        for _ in range(n // batch):
            requests = [request() for _ in range(batch)]
            db.run(functools.partial(store.place_payments, requests=requests, now=T0))
        return n // batch * batch

    def hold_then_capture() -> int:
        for _ in range(n // 2):
            held = db.run(functools.partial(store.place, request=request(PaymentType.HOLD), now=T0))
            db.run(
                functools.partial(
                    store.capture,
                    payment_id=held.payment_id,
                    amount_minor=held.amount_minor,
                    now=T0,
                )
            )
        return n // 2 * 2

    results = []
    for what, work in (
        ("pay, 1 per transaction", one_per_transaction),
        (f"pay, batches of {batch}", batched),
        ("hold + capture, 1 per transaction", hold_then_capture),
    ):
        count, seconds, statements = timed(db, work)
        results.append((name, what, count, seconds, statements))
    return results


def timed(db: Database, work: Callable[[], int]) -> tuple[int, float, int]:
    """(transfers, seconds, statements sent to the database, BEGIN and COMMIT not counted)."""
    statements = 0

    def count(sql: str) -> None:
        nonlocal statements
        # BEGIN/COMMIT frame every transaction; the pool pings each checkout ("SELECT 1" / ";").
        sql = sql.strip().upper()
        statements += sql not in ("", ";", "SELECT 1") and not sql.startswith(
            ("BEGIN", "COMMIT", "ROLLBACK")
        )

    def watch(dbapi_connection: Any, *_: Any) -> None:
        # At the driver, so that statements run on the DBAPI cursor directly are counted too.
        if db.is_sqlite:
            dbapi_connection.set_trace_callback(count)
            return

        class CountingCursor(psycopg.Cursor[Any]):
            def execute(self, query: Any, *args: Any, **kwargs: Any) -> Any:
                count(str(query))
                return super().execute(query, *args, **kwargs)

        dbapi_connection.cursor_factory = CountingCursor

    db.dispose()
    event.listen(db.engine, "connect", watch)
    try:
        started = time.perf_counter()
        transfers = work()
        seconds = time.perf_counter() - started
    finally:
        db.dispose()
        event.remove(db.engine, "connect", watch)
    return transfers, seconds, statements


if __name__ == "__main__":
    main()
