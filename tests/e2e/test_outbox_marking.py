"""Results the broker acknowledged are marked in the outbox by the worker, in its next batch's
own transaction, while orders flow, and by the housekeeper once the worker is quiet: on SQLite a
write by another connection makes the worker's connection drop its whole page cache (about 7
page reads a payment at 100 orders/s when the housekeeper marked every 0.1 s)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from devices import wire
from gateway.mqtt import workers
from gateway.orders import store as order_store
from tests.e2e.orders import setup_payer
from tests.e2e.test_orders import OPEN, merchant
from tests.support.stack import Stack


@pytest.fixture
def markings(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[tuple[str, int]]]:
    """(thread name, ids marked) of every `mark_published` that marked something; the real
    function still writes."""
    found: list[tuple[str, int]] = []
    real = order_store.mark_published

    def spy(conn: Any, ids: list[int]) -> None:
        if ids:
            found.append((threading.current_thread().name, len(ids)))
        real(conn, ids)

    monkeypatch.setattr(order_store, "mark_published", spy)
    yield found


def unpublished(stack: Stack) -> int:
    with stack.ctx.db.read() as conn:
        return len(order_store.unpublished(conn, stack.ctx.clock() + timedelta(days=1)))


def test_the_worker_marks_while_orders_flow_and_the_housekeeper_once_it_is_quiet(
    gateway: Stack, markings: list[tuple[str, int]]
) -> None:
    shop = merchant(gateway)["id"]
    car = setup_payer(gateway, "car", rules=OPEN)
    flow_ends = time.monotonic() + 3 * workers.WORKER_MARKS_WITHIN_S
    paid = 0
    while time.monotonic() < flow_ends:  # an order every ~0.1 s: the worker is never quiet
        order = car.order(type="pay", payee=shop, amount=1, currency="EUR")
        result = car.send(wire.sign(order, car.key).encode(), order_id=order["order_id"])
        assert result is not None and result["status"] == "approved"
        paid += 1
        time.sleep(0.1)
    during = list(markings)
    assert paid >= 10
    assert during, "nothing was marked while orders flowed"
    assert all(name.startswith("kym-worker") for name, _ in during), during
    deadline = time.monotonic() + workers.WORKER_MARKS_WITHIN_S + 15
    while unpublished(gateway) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert unpublished(gateway) == 0  # the last batch's results too, by the housekeeper
    assert sum(count for _, count in markings) == paid
    assert any(not name.startswith("kym-worker") for name, _ in markings[len(during) :])
    car.close()


def test_ids_whose_marking_was_rolled_back_are_settled_again() -> None:
    publisher = workers.Publisher(client=None)  # type: ignore[arg-type]  # no publishing here
    assert publisher.take_settled() == []
    assert publisher.worker_marks()
    publisher.give_back([3, 4])
    assert publisher.settled() == [3, 4]
    assert publisher.settled() == []
