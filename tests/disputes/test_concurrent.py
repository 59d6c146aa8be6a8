"""Disputes against what commits meanwhile, on real concurrent connections."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import sqlalchemy as sa

from tests.disputes.helpers import paid_merchant
from tests.support.world import World
from wallet import store as wallet_store


def test_a_refund_committed_while_a_dispute_opens_bounds_its_amount(world: World) -> None:
    """The merchant's refund of 100 commits after the opening read the payment and before it
    locked the payer (here one transaction holds the payer's lock and makes the refund):
    450 is then more than what was paid less refunds, 422, and 350 is all there is."""
    paid = paid_merchant(world)
    refunding = world.ctx.db.engine.connect()
    held = refunding.begin()  # SQLite: BEGIN IMMEDIATE, the write lock
    if not world.ctx.db.is_sqlite:
        lock = sa.text("SELECT id FROM devices WHERE id = :id FOR UPDATE")
        refunding.execute(lock, {"id": paid.payer.id})
    wallet_store.refund(
        refunding, payment_id=paid.payment_id, amount_minor=100, now=world.ctx.clock()
    )
    with ThreadPoolExecutor(1) as pool:
        opening = pool.submit(paid.dispute, amount=paid.amount)
        time.sleep(0.5)  # the opening has read the payment, and waits for the payer
        held.commit()
        refunding.close()
        answer = opening.result(timeout=30)
    assert answer.status_code == 422, answer.text
    assert paid.opened()["amount"] == paid.amount - 100
