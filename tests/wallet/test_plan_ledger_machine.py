"""The ledger's random walk (test_ledger_machine.py) with instalment plans added: an owner's
balance sources are topped up, plans open on a credit line into the devices' wallets, the clock
moves on by days, instalments are collected on their due dates (or go overdue and are tried
daily), and plans are repaid early.

On a real SQLite file and a real PostgreSQL schema, through the gateway's own functions
(`open_plan`, `collect_instalment`, `repay_plan`). Besides the ledger's invariants, after every
step `kym ledger check`'s funding and plan invariants hold, and the sources, the credit line, the
fee account and every instalment equal a plain model of them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule, run_state_machine_as_test
from sqlalchemy import Connection

from devices.registry import Device, Status
from gateway import store as gateway_store
from gateway.errors import Conflict
from gateway.funding import plan_store
from gateway.funding import store as funding_store
from gateway.funding.check import check_sources
from gateway.funding.collect import collect_instalment, repay_plan
from gateway.funding.plans import open_plan
from gateway.orders.batch import Batch
from gateway.parties import Party
from tests.support.services import postgres_schema_url
from tests.support.wallets import HOLDERS, T0
from tests.wallet.test_ledger_machine import SETTINGS, LedgerMachine, _migrate
from wallet import draws
from wallet import store as wallet_store
from wallet.ledger import fee_account_id
from wallet.schema import accounts

OWNER = "own_machine"
LINE, LIMIT = "fs_line", 8_000
SOURCES = {"fs_first": 300, "fs_second": 0}  # id -> floor, in draw order
DEVICES = ["dev_a", "dev_b"]
DAY = timedelta(days=1)


@dataclass
class Owed:
    """One instalment as the model has it."""

    amount: int
    due: datetime
    next_try: datetime
    status: str = "scheduled"


@dataclass
class PlanModel:
    id: str
    instalments: list[Owed] = field(default_factory=list)

    def unpaid(self) -> list[Owed]:
        return [i for i in self.instalments if i.status != "paid"]


class PlanLedgerMachine(LedgerMachine):
    """The ledger machine plus an owner's sources, a credit line and plans on it."""

    def __init__(self) -> None:
        super().__init__()
        self.source_balance = dict.fromkeys(SOURCES, 0)
        self.owed = 0
        self.fees = 0
        self.plans: list[PlanModel] = []
        self.keys = itertools.count()
        with self.db.transaction() as conn:
            values = {"id": OWNER, "name": "m", "timezone": "UTC", "created_at": T0}
            gateway_store.insert_party(conn, "owner", {**values, "frozen": False})
            for priority, (source_id, floor) in enumerate(SOURCES.items()):
                self._source(conn, source_id, "balance", priority, floor, None)
                wallet_store.open_wallet(conn, holder_id=source_id, currency="EUR", now=T0)
            self._source(conn, LINE, "credit_line", 50, 0, LIMIT)
            draws.open_credit_account(conn, account_id=LINE, currency="EUR", now=T0)

    @staticmethod
    def _source(
        conn: Connection, source_id: str, kind: str, priority: int, floor: int, limit: int | None
    ) -> None:
        row = {
            "id": source_id,
            "owner_id": OWNER,
            "name": source_id,
            "kind": kind,
            "currency": "EUR",
            "priority": priority,
            "floor_minor": floor,
            "credit_limit_minor": limit,
            "apr_bps": None if limit is None else 0,
        }
        funding_store.insert_source(conn, row, T0)

    # --- rules -----------------------------------------------------------------------------------

    @rule(source=st.sampled_from(sorted(SOURCES)), amount=st.integers(1, 4_000))
    def fund_source(self, source: str, amount: int) -> None:
        with self.db.transaction() as conn:
            wallet_store.top_up(
                conn,
                holder_id=source,
                amount_minor=amount,
                currency="EUR",
                idempotency_key=f"s{next(self.keys)}",
                now=self.now,
            )
        self.source_balance[source] += amount

    @rule(
        device=st.sampled_from(DEVICES),
        amount=st.one_of(st.integers(1, 8), st.integers(1, 4_000)),
        count=st.integers(2, 6),
        apr_bps=st.sampled_from([0, 1, 999, 10_000]),
        interval_days=st.sampled_from([7, 30, 92]),
    )
    def open_a_plan(
        self, device: str, amount: int, count: int, apr_bps: int, interval_days: int
    ) -> None:
        fee = (amount * apr_bps * count * interval_days + 1_825_000) // 3_650_000
        total = amount + fee
        fits = self.owed + total <= LIMIT
        with self.db.transaction() as conn:
            try:
                plan_id = open_plan(
                    Batch(conn, self.now),
                    device=_device(device),
                    source_id=LINE,
                    payment_id=f"pay_plan{next(self.keys)}",
                    amount_minor=amount,
                    count=count,
                    apr_bps=apr_bps,
                    interval_days=interval_days,
                )
            except Conflict as refused:
                assert refused.reason == "credit_limit_exceeded" and not fits
                return
        assert fits
        self.owed += total
        self.fees += fee
        self.balance[device] += amount
        each = total // count
        parts = [each] * (count - 1) + [total - each * (count - 1)]
        due = [self.now + timedelta(days=interval_days * n) for n in range(1, count + 1)]
        self.plans.append(
            PlanModel(plan_id, [Owed(a, d, d) for a, d in zip(parts, due, strict=True)])
        )

    @rule(days=st.integers(1, 40))
    def advance_days(self, days: int) -> None:
        self.now += timedelta(days=days)

    @rule()
    def collect_due(self) -> None:
        """What the housekeeper does in a round: each due instalment in its own transaction."""
        with self.db.read() as conn:
            due = plan_store.due(conn, self.now, limit=10_000)
        expected = sorted(
            (owed.next_try, plan.id, n)
            for plan in self.plans
            for n, owed in enumerate(plan.instalments, start=1)
            if owed.status != "paid" and owed.next_try <= self.now
        )
        assert due == [(plan_id, n) for _, plan_id, n in expected]
        for plan_id, n in due:
            with self.db.transaction() as conn:
                assert collect_instalment(conn, plan_id, n, self.now) == 1
            owed = self._plan(plan_id).instalments[n - 1]
            if self._take(owed.amount):
                owed.status = "paid"
            else:
                owed.status = "overdue"
                while owed.next_try <= self.now:
                    owed.next_try += DAY

    @precondition(lambda self: self.plans)
    @rule(data=st.data())
    def repay(self, data: st.DataObject) -> None:
        plan = data.draw(st.sampled_from(self.plans))
        rest = sum(i.amount for i in plan.unpaid())
        with self.db.transaction() as conn:
            try:
                shown = repay_plan(conn, Party("owner", OWNER), plan.id, self.now)
            except Conflict as refused:
                assert refused.reason == "insufficient_funds"
                assert rest > sum(self._above_floors().values())
                return
        assert rest == 0 or self._take(rest)
        for owed in plan.unpaid():
            owed.status = "paid"
        assert shown["status"] == "repaid"

    def _take(self, amount: int) -> bool:
        """The model of a collection: sources in draw order down to their floors, or nothing."""
        can = self._above_floors()
        if sum(can.values()) < amount:
            return False
        self.owed -= amount
        for source_id, above in can.items():
            take = min(above, amount)
            self.source_balance[source_id] -= take
            amount -= take
        return True

    def _above_floors(self) -> dict[str, int]:
        return {s: max(0, self.source_balance[s] - floor) for s, floor in SOURCES.items()}

    def _plan(self, plan_id: str) -> PlanModel:
        return next(p for p in self.plans if p.id == plan_id)

    # --- invariants ------------------------------------------------------------------------------

    @invariant()
    def plans_sources_and_fees_match_the_model(self) -> None:
        with self.db.read() as conn:
            assert [str(b) for b in check_sources(conn)] == []
            balances = dict(
                conn.execute(
                    accounts.select()
                    .with_only_columns(
                        accounts.c.id, accounts.c.credits_posted - accounts.c.debits_posted
                    )
                    .where(accounts.c.id.in_([*SOURCES, LINE, fee_account_id("EUR")]))
                ).all()
            )
            schedules = plan_store.plan_instalments(conn, [p.id for p in self.plans])
        assert {s: balances[s] for s in SOURCES} == self.source_balance
        assert balances[LINE] == -self.owed and self.owed <= LIMIT
        assert balances.get(fee_account_id("EUR"), 0) == self.fees
        for plan in self.plans:
            got = [(i["amount_minor"], i["status"], i["next_try_at"]) for i in schedules[plan.id]]
            assert got == [(o.amount, o.status, o.next_try) for o in plan.instalments]
            assert sum(o.amount for o in plan.unpaid()) <= self.owed


def _device(device_id: str) -> Device:
    return Device(
        id=device_id,
        owner_id=OWNER,
        integrator_id="int_machine",
        kind="car",
        manufacturer="ACME",
        model="M",
        serial_number=device_id,
        currency=HOLDERS[device_id],
        category=None,
        status=Status.ACTIVE,
        attested=False,
        created_at=T0,
    )


def machine_for(make_url: Any) -> type[PlanLedgerMachine]:
    return type(
        "PlanLedgerMachineOnThisDatabase",
        (PlanLedgerMachine,),
        {"make_url": staticmethod(make_url)},
    )


@pytest.mark.slow
def test_plans_never_lose_or_invent_a_cent_on_sqlite(tmp_path: Path) -> None:
    counter = itertools.count()

    def make_url() -> str:
        url = f"sqlite:///{tmp_path / f'plans-{next(counter)}.db'}"
        _migrate(url)
        return url

    run_state_machine_as_test(machine_for(make_url), settings=SETTINGS)


@pytest.mark.slow
@pytest.mark.postgres
def test_plans_never_lose_or_invent_a_cent_on_postgres(postgres_database: str) -> None:
    def make_url() -> str:
        url = postgres_schema_url(postgres_database)
        _migrate(url)
        return url

    run_state_machine_as_test(machine_for(make_url), settings=settings(SETTINGS, max_examples=30))
