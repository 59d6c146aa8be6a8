"""What backs the ledger up beyond its code: database constraints, and check() finding tampering."""

from __future__ import annotations

import functools

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from gateway.db import Database
from tests.support.wallets import (
    T0,
    assert_books_balance,
    balances,
    fund,
    hold,
    pay,
    run,
)
from wallet import journal, schema, store
from wallet.check import check


def test_the_journal_is_append_only(wallets: Database) -> None:
    fund(wallets, "dev_a", 10)
    for statement in (
        "UPDATE wallet_transfers SET amount_minor = 1",
        "DELETE FROM wallet_transfers",
    ):
        with pytest.raises(DBAPIError, match="append-only"):
            run(wallets, functools.partial(Connection.execute, statement=text(statement)))
    assert balances(wallets, "dev_a") == (10, 10)


def test_the_database_refuses_a_second_resolution_of_a_hold(wallets: Database) -> None:
    fund(wallets, "dev_a", 1000)
    hold(wallets, 400)
    run(wallets, lambda c: store.void(c, payment_id="hold_1", now=T0))
    with pytest.raises(DBAPIError):
        run(
            wallets,
            lambda c: c.execute(
                schema.transfers.insert(),
                {
                    "kind": "capture",
                    "payment_id": "hold_1",
                    "pending_id": "hold_1",
                    "debit_account_id": "dev_a",
                    "credit_account_id": "mer_x",
                    "amount_minor": 400,
                    "currency": "EUR",
                    "created_at": T0,
                },
            ),
        )


def test_the_database_refuses_an_overdraft_even_without_the_condition(wallets: Database) -> None:
    fund(wallets, "dev_a", 10)
    with pytest.raises(DBAPIError):
        run(
            wallets,
            lambda c: c.execute(
                text(
                    "UPDATE wallet_accounts SET debits_posted = debits_posted + 11"
                    " WHERE id = 'dev_a'"
                )
            ),
        )


@pytest.mark.parametrize(
    "tamper, rule",
    [
        (
            "UPDATE wallet_accounts SET credits_posted = credits_posted + 1 WHERE id = 'mer_x'",
            "conservation",
        ),
        (
            "UPDATE wallet_accounts SET credits_posted = credits_posted + 1 WHERE id = 'mer_x'",
            "counters",
        ),
        (
            "UPDATE wallet_accounts SET debits_pending = debits_pending - 1 WHERE id = 'dev_a'",
            "conservation",
        ),
        (
            "UPDATE wallet_payments SET captured_amount_minor = 3 WHERE payment_id = 'hold_1'",
            "payments",
        ),
        ("UPDATE wallet_payments SET status = 'voided' WHERE payment_id = 'hold_1'", "payments"),
        (
            "UPDATE wallet_payments SET refunded_amount_minor = 1 WHERE payment_id = 'pay_1'",
            "payments",
        ),
        ("DELETE FROM wallet_payments WHERE payment_id = 'pay_1'", "payments"),
        ("DELETE FROM wallet_top_ups", "top_up"),
        ("UPDATE wallet_top_ups SET amount_minor = 7", "top_up"),
        (
            "INSERT INTO wallet_transfers (kind, payment_id, debit_account_id, credit_account_id,"
            " amount_minor, currency, created_at) VALUES ('refund', 'pay_1', 'mer_x', 'dev_a', 999,"
            " 'EUR', '2030-01-01 12:00:00')",
            "refund",
        ),
        (
            "INSERT INTO wallet_transfers (kind, payment_id, pending_id, debit_account_id,"
            " credit_account_id, amount_minor, currency, created_at) VALUES ('capture', 'pay_1',"
            " 'pay_1', 'dev_a', 'mer_x', 1, 'EUR', '2030-01-01 12:00:00')",
            "resolution",
        ),
        (
            "INSERT INTO wallet_transfers (kind, payment_id, debit_account_id, credit_account_id,"
            " amount_minor, currency, created_at) VALUES ('pay', 'pay_2', 'dev_a', 'mer_u', 1,"
            " 'EUR', '2030-01-01 12:00:00')",
            "currency",
        ),
    ],
)
def test_check_finds_tampering(wallets: Database, tamper: str, rule: str) -> None:
    fund(wallets, "dev_a", 1000)
    pay(wallets, 10)
    hold(wallets, 20)
    assert_books_balance(wallets)
    run(wallets, lambda c: c.execute(text(tamper)))
    with wallets.read() as conn:
        assert rule in {breach.rule for breach in check(conn)}


def test_check_finds_an_overdraft(wallets: Database) -> None:
    # The database's own constraint would refuse this, so drop to a contra-like flag first.
    run(
        wallets,
        lambda c: c.execute(
            text(
                "UPDATE wallet_accounts SET debits_must_not_exceed_credits = false,"
                " debits_posted = 5 WHERE id = 'dev_a'"
            )
        ),
    )
    with wallets.read() as conn:
        assert {"overdraft", "counters"} <= {breach.rule for breach in check(conn)}


def test_database_errors_on_the_fast_path_surface_as_sqlalchemy_errors(wallets: Database) -> None:
    # Database.run retries deadlocks by SQLAlchemy's exception types, so the statements that run
    # on the DBAPI cursor directly must raise those types too.
    row = {
        "kind": "pay",
        "payment_id": "p",
        "pending_id": None,
        "idempotency_key": None,
        "debit_account_id": "dev_a",
        "credit_account_id": "mer_x",
        "amount_minor": 0,
        "currency": "EUR",
        "created_at": T0,
        "expires_at": None,
    }
    with pytest.raises(IntegrityError):
        run(wallets, lambda c: journal.append(c, row))
