"""Seed a migrated KYM database (PostgreSQL or SQLite) with many devices and stored payments.

    .venv/bin/python benchmarks/seed_scale.py URL --devices 100000 --payments 1000000

URL: `postgresql://...` or `sqlite:///PATH`, a database `kym serve` (or `kym bench
--database-url`) has migrated; run a `kym bench` on it first, whose owner and integrator the
seeded devices get. Rows are made inside the database (no client round trips): PostgreSQL by
`INSERT ... SELECT generate_series(...)`, SQLite by `INSERT ... SELECT` from a recursive CTE
in one transaction with the bulk-load PRAGMAs (no journal, no fsync, a 2 GB page cache; WAL
is set back at the end). Seeded: devices (status
active), a wallet account per device and one merchant account, and per payment one
`wallet_payments` row and its `pay` transfer (device wallet to merchant wallet, 1 minor
unit), with the accounts' posted counters and one top-up per device set to match. No
certificates, orders or audit entries are made: the seeded devices never connect.
On SQLite the payment ids are zero-padded (`pay_seed0000000042`), so that the unique indexes
grow at their end.
"""

from __future__ import annotations

import argparse
import sqlite3
import time
from collections.abc import Callable
from datetime import UTC, datetime

import psycopg

STATEMENTS = [
    """INSERT INTO wallet_accounts (id, kind, currency, debits_must_not_exceed_credits,
        debits_posted, credits_posted, debits_pending, credits_pending, created_at)
       VALUES ('seed-merchant', 'wallet', 'EUR', true, 0, %(payments)s, 0, 0, now()),
              ('seed-contra', 'contra', 'EUR', false, %(funded)s, 0, 0, 0, now())""",
    """INSERT INTO devices (id, owner_id, integrator_id, kind, manufacturer, model,
        serial_number, currency, category, status, attested, created_at, updated_at)
       SELECT 'dev_seed' || lpad(n::text, 9, '0'), (SELECT min(id) FROM owners),
              (SELECT min(id) FROM integrators), 'other',
              'seed', 's', 'seed-' || n, 'EUR', NULL, 'active', false, now(), now()
       FROM generate_series(0, %(devices)s - 1) AS n""",
    """INSERT INTO wallet_accounts (id, kind, currency, debits_must_not_exceed_credits,
        debits_posted, credits_posted, debits_pending, credits_pending, created_at)
       SELECT 'dev_seed' || lpad(n::text, 9, '0'), 'wallet', 'EUR', true,
              %(payments)s / %(devices)s + (n < %(payments)s %% %(devices)s)::int,
              %(per_device_funds)s, 0, 0, now()
       FROM generate_series(0, %(devices)s - 1) AS n""",
    """INSERT INTO wallet_transfers (kind, idempotency_key, debit_account_id,
        credit_account_id, amount_minor, currency, created_at)
       SELECT 'top_up', 'seed', 'seed-contra', 'dev_seed' || lpad(n::text, 9, '0'),
              %(per_device_funds)s, 'EUR', now()
       FROM generate_series(0, %(devices)s - 1) AS n""",
    """INSERT INTO wallet_payments (payment_id, order_id, payer_id, payee_id, type,
        amount_minor, captured_amount_minor, refunded_amount_minor, status, currency,
        created_at)
       SELECT 'pay_seed' || n, 'seed-' || n, 'dev_seed' || lpad((n %% %(devices)s)::text, 9, '0'),
              'seed-merchant', 'pay', 1, 1, 0, 'captured', 'EUR', now()
       FROM generate_series(0, %(payments)s - 1) AS n""",
    """INSERT INTO wallet_transfers (kind, payment_id, debit_account_id, credit_account_id,
        amount_minor, currency, created_at)
       SELECT 'pay', 'pay_seed' || n, 'dev_seed' || lpad((n %% %(devices)s)::text, 9, '0'),
              'seed-merchant', 1, 'EUR', now()
       FROM generate_series(0, %(payments)s - 1) AS n""",
]

SQLITE_NUMBERS = (
    "WITH RECURSIVE seq(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM seq WHERE n + 1 < {})"
)
SQLITE_DEVICE = "'dev_seed' || substr('00000000' || n, -9)"
SQLITE_PAYER = "'dev_seed' || substr('00000000' || (n % :devices), -9)"
SQLITE_PAYMENT = "'pay_seed' || substr('000000000' || n, -10)"
SQLITE_STATEMENTS = [
    """INSERT INTO wallet_accounts (id, kind, currency, debits_must_not_exceed_credits,
        debits_posted, credits_posted, debits_pending, credits_pending, created_at)
       VALUES ('seed-merchant', 'wallet', 'EUR', 1, 0, :payments, 0, 0, :now),
              ('seed-contra', 'contra', 'EUR', 0, :funded, 0, 0, 0, :now)""",
    f"""{SQLITE_NUMBERS.format(":devices")}
       INSERT INTO devices (id, owner_id, integrator_id, kind, manufacturer, model,
        serial_number, currency, category, status, attested, created_at, updated_at)
       SELECT {SQLITE_DEVICE}, (SELECT min(id) FROM owners), (SELECT min(id) FROM integrators),
              'other', 'seed', 's', 'seed-' || n, 'EUR', NULL, 'active', 0, :now, :now
       FROM seq""",
    f"""{SQLITE_NUMBERS.format(":devices")}
       INSERT INTO wallet_accounts (id, kind, currency, debits_must_not_exceed_credits,
        debits_posted, credits_posted, debits_pending, credits_pending, created_at)
       SELECT {SQLITE_DEVICE}, 'wallet', 'EUR', 1,
              :payments / :devices + (n < :payments % :devices), :per_device_funds, 0, 0, :now
       FROM seq""",
    f"""{SQLITE_NUMBERS.format(":devices")}
       INSERT INTO wallet_transfers (kind, idempotency_key, debit_account_id,
        credit_account_id, amount_minor, currency, created_at)
       SELECT 'top_up', 'seed', 'seed-contra', {SQLITE_DEVICE}, :per_device_funds, 'EUR', :now
       FROM seq""",
    f"""{SQLITE_NUMBERS.format(":payments")}
       INSERT INTO wallet_payments (payment_id, order_id, payer_id, payee_id, type,
        amount_minor, captured_amount_minor, refunded_amount_minor, status, currency,
        created_at)
       SELECT {SQLITE_PAYMENT}, 'seed-' || n, {SQLITE_PAYER}, 'seed-merchant', 'pay', 1, 1, 0,
              'captured', 'EUR', :now
       FROM seq""",
    f"""{SQLITE_NUMBERS.format(":payments")}
       INSERT INTO wallet_transfers (kind, payment_id, debit_account_id, credit_account_id,
        amount_minor, currency, created_at)
       SELECT 'pay', {SQLITE_PAYMENT}, {SQLITE_PAYER}, 'seed-merchant', 1, 'EUR', :now
       FROM seq""",
]


def seed_sqlite(path: str, params: dict[str, object]) -> None:
    """SQLITE_STATEMENTS in one transaction, with the bulk-load PRAGMAs, then ANALYZE."""
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for pragma in ("journal_mode = OFF", "synchronous = OFF", "cache_size = -2000000"):
            conn.execute(f"PRAGMA {pragma}")
        conn.execute("BEGIN")
        for statement in [*SQLITE_STATEMENTS, "COMMIT", "ANALYZE"]:
            _timed(conn.execute, statement, {**params, "now": now})
        conn.execute("PRAGMA journal_mode = WAL")
    finally:
        conn.close()


def seed_postgresql(url: str, params: dict[str, object]) -> None:
    """STATEMENTS, each in its own round trip, then ANALYZE."""
    with psycopg.connect(url) as conn:
        for statement in [*STATEMENTS, "ANALYZE"]:
            _timed(conn.execute, statement, params)


def _timed(execute: Callable[..., object], statement: str, params: dict[str, object]) -> None:
    started = time.perf_counter()
    execute(statement, params if ":" in statement or "%(" in statement else ())
    words = statement.split()
    at = words.index("INSERT") if "INSERT" in words else 0
    print(f"{time.perf_counter() - started:8.1f} s  {' '.join(words[at : at + 3])}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "url", help="postgresql://... (psycopg form, no +psycopg) or sqlite:///PATH"
    )
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--payments", type=int, default=1_000_000)
    args = parser.parse_args()
    per_device_funds = 10 * (args.payments // args.devices + 1)
    params: dict[str, object] = {
        "devices": args.devices,
        "payments": args.payments,
        "per_device_funds": per_device_funds,
        "funded": per_device_funds * args.devices,
    }
    if args.url.startswith("sqlite:///"):
        seed_sqlite(args.url.removeprefix("sqlite:///"), params)
    else:
        seed_postgresql(args.url, params)


if __name__ == "__main__":
    main()
