"""Helpers for the plan tests: a car with a credit line and balance sources, plans opened the
way the approval path opens them (`open_plan` then the payment from the wallet), and reads."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from devices import store as device_store
from gateway.events import store as event_store
from gateway.funding import plan_store
from gateway.funding.check import check_sources
from gateway.funding.plans import open_plan
from gateway.orders.batch import Batch, finish
from tests.support.funding import fund, source
from tests.support.world import Clock, Dev, World
from wallet import store as wallet_store
from wallet.check import check
from wallet.ledger import fee_account_id
from wallet.schema import accounts


@dataclass
class Owner:
    """A car of one owner, its credit line and its everyday account."""

    world: World
    car: Dev
    line: dict[str, Any]
    everyday: dict[str, Any]
    shop: dict[str, Any]

    def open(
        self, amount: int, count: int = 3, apr_bps: int = 1_000, interval_days: int = 30
    ) -> str:
        """A plan for a pay of `amount` to the shop, as approving an offer opens it."""
        ctx = self.world.ctx
        now = ctx.clock()

        def work(conn: Connection) -> str:
            batch = Batch(conn, now)
            device = device_store.get_device(conn, self.car.id)
            assert device is not None
            payment_id = f"pay_{secrets.token_hex(8)}"
            plan_id = open_plan(
                batch,
                device=device,
                source_id=self.line["id"],
                payment_id=payment_id,
                amount_minor=amount,
                count=count,
                apr_bps=apr_bps,
                interval_days=interval_days,
            )
            wallet_store.pay(
                conn,
                payer_id=device.id,
                payee_id=self.shop["id"],
                amount_minor=amount,
                currency="EUR",
                payment_id=payment_id,
                order_id=f"o-{payment_id}",
                now=now,
            )
            finish(ctx, batch)
            return plan_id

        return ctx.db.run(work)

    def plans(self) -> list[dict[str, Any]]:
        response = self.world.api.get("/v1/owners/me/instalment-plans", headers=self.car.owner)
        assert response.status_code == 200, response.text
        return list(response.json()["items"])

    def plan(self, plan_id: str) -> dict[str, Any]:
        return next(p for p in self.plans() if p["id"] == plan_id)

    def repay(self, plan_id: str, headers: dict[str, str] | None = None) -> Any:
        return self.world.api.post(
            f"/v1/instalment-plans/{plan_id}/repay", headers=headers or self.car.owner
        )

    def source(self, source_id: str) -> dict[str, Any]:
        items = self.world.api.get("/v1/owners/me/funding-sources", headers=self.car.owner)
        return next(s for s in items.json()["items"] if s["id"] == source_id)


def owner_with_line(
    world: World, *, limit: int = 100_000, apr_bps: int = 1_000, wallet: int = 0, floor: int = 0
) -> Owner:
    car = world.device("car", top_up=wallet, rules={"currency": "EUR"})
    line = source(
        world, car.owner, name="card", kind="credit_line", credit_limit=limit, apr_bps=apr_bps
    )
    everyday = source(world, car.owner, name="everyday", priority=10, floor=floor)
    return Owner(world, car, line, everyday, world.merchant())


def top_up(owner: Owner, source_id: str, amount: int, key: str) -> None:
    assert fund(owner.world, owner.car.owner, source_id, amount, key).status_code == 201


def balance_of(world: World, account_id: str) -> int:
    with world.ctx.db.read() as conn:
        row = conn.execute(accounts.select().where(accounts.c.id == account_id)).first()
    return 0 if row is None else int(row.credits_posted - row.debits_posted)


def fees_of(world: World) -> int:
    return balance_of(world, fee_account_id("EUR"))


def instalment_rows(world: World, plan_id: str) -> list[dict[str, Any]]:
    with world.ctx.db.read() as conn:
        return plan_store.plan_instalments(conn, [plan_id])[plan_id]


def books(world: World) -> list[Any]:
    """Every breach `kym ledger check` would report."""
    with world.ctx.db.read() as conn:
        return [*check(conn), *check_sources(conn)]


def at(world: World) -> datetime:
    return world.ctx.clock()


def events_of(world: World, owner: Owner, event_type: str) -> list[dict[str, Any]]:
    """The data of the owner's events of this type, oldest first."""
    owner_id = world.api.get("/v1/owners/me", headers=owner.car.owner).json()["id"]
    table = event_store.events
    query = (
        sa.select(table.c.data_json)
        .where(table.c.recipient == owner_id, table.c.type == event_type)
        .order_by(table.c.seq)
    )
    with world.ctx.db.read() as conn:
        return [json.loads(data) for (data,) in conn.execute(query)]


def advance_days(world: World, days: float) -> None:
    clock = world.ctx.clock
    assert isinstance(clock, Clock)
    clock.advance(days * 86_400)
