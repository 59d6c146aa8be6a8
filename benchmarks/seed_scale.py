"""Seed a migrated KYM PostgreSQL database with many devices and stored payments, server-side.

    .venv/bin/python benchmarks/seed_scale.py URL --devices 100000 --payments 1000000

URL: a database `kym serve` (or `kym bench --database-url`) has migrated; run a `kym bench`
on it first, whose owner and integrator the seeded devices get. Rows are made by `INSERT ...
SELECT generate_series(...)` inside PostgreSQL (no client round trips): devices (status
active), a wallet account per device and one merchant account, and per payment one
`wallet_payments` row and its `pay` transfer (device wallet to merchant wallet, 1 minor
unit), with the accounts' posted counters and one top-up per device set to match. No
certificates, orders or audit entries are made: the seeded devices never connect.
PostgreSQL only; SQLite was not done.
"""

from __future__ import annotations

import argparse
import time

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url", help="postgresql://... (psycopg form, no +psycopg)")
    parser.add_argument("--devices", type=int, default=100_000)
    parser.add_argument("--payments", type=int, default=1_000_000)
    args = parser.parse_args()
    per_device_funds = 10 * (args.payments // args.devices + 1)
    params = {
        "devices": args.devices,
        "payments": args.payments,
        "per_device_funds": per_device_funds,
        "funded": per_device_funds * args.devices,
    }
    with psycopg.connect(args.url) as conn:
        for statement in STATEMENTS:
            started = time.perf_counter()
            conn.execute(statement, params)
            head = " ".join(statement.split()[:3])
            print(f"{time.perf_counter() - started:8.1f} s  {head}", flush=True)
        started = time.perf_counter()
        conn.execute("ANALYZE")
        print(f"{time.perf_counter() - started:8.1f} s  ANALYZE", flush=True)


if __name__ == "__main__":
    main()
