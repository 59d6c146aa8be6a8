"""`kym ledger check` for funding sources: it finds a draw below a floor and a credit line
beyond its limit, and passes a source topped up to less than its floor (SQLite, PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import Connection

from gateway.context import Context
from gateway.funding.check import check_sources
from tests.support.funding import fund, source
from tests.support.world import World
from wallet import draws
from wallet.check import check


def test_breaches_of_floors_and_credit_limits_are_reported(world: World, ctx: Context) -> None:
    car = world.device("car", top_up=0)
    account = source(world, car.owner, floor=500)
    line = source(world, car.owner, kind="credit_line", credit_limit=1_000)
    fund(world, car.owner, account["id"], 700, "k")
    with ctx.db.read() as conn:
        assert check_sources(conn) == []  # 700 >= 500; a top-up below a floor is no breach
    now = ctx.clock()

    def draw(conn: Connection, source_id: str, amount: int, payment_id: str) -> bool:
        return draws.draw(
            conn,
            source_id=source_id,
            wallet_id=car.id,
            currency="EUR",
            amount_minor=amount,
            floor_minor=0,  # what the gateway never does: ignore the floor
            payment_id=payment_id,
            now=now,
        )

    def work(conn: Connection) -> None:
        assert draw(conn, account["id"], 200, "pay_a")  # exactly to the floor: fine
        assert draw(conn, account["id"], 1, "pay_b")  # one below
        assert draw(conn, line["id"], 1_001, "pay_c")  # one beyond the limit

    ctx.db.run(work)
    with ctx.db.read() as conn:
        found = {(b.rule, b.subject) for b in check_sources(conn)}
        assert check(conn) == []  # the double entry itself still balances
    # the line also owes what no plan accounts for
    assert found == {
        ("floor", account["id"]),
        ("credit_limit", line["id"]),
        ("credit_line", line["id"]),
    }


def test_draws_refuse_to_cross_a_floor(world: World, ctx: Context) -> None:
    car = world.device("car", top_up=0)
    account = source(world, car.owner, floor=500)
    fund(world, car.owner, account["id"], 700, "k")
    now = ctx.clock()

    def work(conn: Connection, amount: int) -> bool:
        return draws.draw(
            conn,
            source_id=account["id"],
            wallet_id=car.id,
            currency="EUR",
            amount_minor=amount,
            floor_minor=500,
            payment_id=f"pay_{amount}",
            now=now,
        )

    assert ctx.db.run(lambda conn: work(conn, 201)) is False
    assert ctx.db.run(lambda conn: work(conn, 200)) is True
    assert ctx.db.run(lambda conn: work(conn, 1)) is False
    assert car.wallet()["balance"] == 200
