"""`kym ledger check` for funding sources: it finds a draw below a floor and a credit line
beyond its limit, and passes a source topped up to less than its floor (SQLite, PostgreSQL)."""

from __future__ import annotations

from sqlalchemy import Connection

from gateway.context import Context
from gateway.funding.check import check_draws, check_sources
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
        unpaid = [b.detail for b in check_draws(conn)]
        assert check(conn) == []  # the double entry itself still balances
    # the line also owes what no plan accounts for
    assert found == {
        ("floor", account["id"]),
        ("credit_limit", line["id"]),
        ("credit_line", line["id"]),
    }
    # and those draws name payments that were never opened
    assert unpaid == [f"a draw for {p}, never opened" for p in ("pay_a", "pay_b", "pay_c")]


def test_draws_must_fund_their_own_payment_from_the_payer_owner(world: World, ctx: Context) -> None:
    shop = world.merchant()
    rules = {"currency": "EUR", "auto_top_up": {"below": 0, "to": 500}}
    alice, bob = (
        world.device("alice", top_up=0, rules=rules),
        world.device("bob", top_up=100, rules={"currency": "EUR"}),
    )
    savings = source(world, alice.owner)
    fund(world, alice.owner, savings["id"], 10_000, "k")
    paid = alice.send(alice.order(type="pay", payee=shop["id"], amount=300, currency="EUR"))
    assert paid["status"] == "approved" and paid["funded_by"]  # a real automatic top-up
    with ctx.db.read() as conn:
        assert check_sources(conn) == check_draws(conn) == []
    now = ctx.clock()

    def draw(conn: Connection, wallet_id: str, payment_id: str) -> bool:
        return draws.draw(
            conn, source_id=savings["id"], wallet_id=wallet_id, currency="EUR",
            amount_minor=100, floor_minor=0, payment_id=payment_id, now=now,
        )  # fmt: skip

    ctx.db.run(lambda conn: draw(conn, bob.id, "pay_nowhere"))  # alice's savings to bob
    ctx.db.run(lambda conn: draw(conn, bob.id, paid["payment_id"]))  # not the payer's wallet
    bobs = bob.send(bob.order(type="pay", payee=shop["id"], amount=50, currency="EUR"))
    ctx.db.run(lambda conn: draw(conn, bob.id, bobs["payment_id"]))  # not bob's owner's source
    with ctx.db.read() as conn:
        details = [b.detail for b in check_draws(conn)]
    assert details == [
        "a draw for pay_nowhere, never opened",
        f"a draw into {bob.id}, not the payer's wallet",
        f"a draw from {savings['id']}, not the payer's owner's",
    ]


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
