"""The gateway acknowledges an order to the broker only once its decision is committed, on
both brokers: what it never acknowledged comes back to the same worker identity, a message
that keeps failing gets one final rejection and is acknowledged so it cannot stall the worker,
a failure after the commit decides nothing again, and a database that answers reads but refuses
writes keeps the orders waiting rather than rejecting them."""

from __future__ import annotations

import queue
import secrets
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from devices import wire
from gateway.mqtt.client import Inbound
from gateway.mqtt.retire import retire_identity
from gateway.mqtt.workers import MAX_TRIES, RETRY_PAUSE_S, Entries, Publisher, Worker
from gateway.orders import store as order_store
from tests.e2e.orders import setup_payer
from tests.faults.inprocess import Gateway, serve_gateway
from tests.support.disk import fill, tmpfs
from tests.support.services import PG_SERVER_URL, unavailable


class PgDatabase:
    """A PostgreSQL database of the test's own on the machine's server, which it can make
    read-only for new sessions (and end the current ones, so that the gateway's next are)."""

    def __init__(self) -> None:
        self.name = f"kym_ro_{secrets.token_hex(4)}"
        self.server = create_engine(PG_SERVER_URL, isolation_level="AUTOCOMMIT")
        try:
            self._sql(f'CREATE DATABASE "{self.name}"')
        except Exception as exc:  # noqa: BLE001 - any failure means "no server here"
            self.server.dispose()
            unavailable(f"PostgreSQL at {PG_SERVER_URL} ({type(exc).__name__})")
        self.url = f"{PG_SERVER_URL.rpartition('/')[0]}/{self.name}"

    def read_only(self, on: bool) -> None:
        setting = "SET default_transaction_read_only = on" if on else "RESET ALL"
        self._sql(f'ALTER DATABASE "{self.name}" {setting}')
        self._sql(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            f" WHERE datname = '{self.name}' AND pid <> pg_backend_pid()"
        )

    def drop(self) -> None:
        self._sql(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self.server.dispose()

    def _sql(self, statement: str) -> None:
        with self.server.connect() as conn:
            conn.execute(text(statement))


@pytest.fixture
def pg_gateway(tmp_path: Path) -> Iterator[tuple[Gateway, PgDatabase]]:
    """A gateway (embedded broker) on a PostgreSQL database of the test's own."""
    database = PgDatabase()
    try:
        for gateway in serve_gateway(tmp_path, database.url, "embedded"):
            yield gateway, database
    finally:
        database.drop()


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A tmpfs of 32 MB of the test's own."""
    (tmp_path / "disk").mkdir()
    with tmpfs(tmp_path / "disk", 32) as mount:
        yield mount


@pytest.fixture
def disk_gateway(tmp_path: Path, small_disk: Path) -> Iterator[Gateway]:
    """A gateway (embedded broker) whose SQLite database is on `small_disk`."""
    yield from serve_gateway(tmp_path, f"sqlite:///{small_disk / 'kym.db'}", "embedded")


def _drain(inbox: queue.SimpleQueue[Inbound], seconds: float) -> list[Inbound]:
    got, deadline = [], time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            got.append(inbox.get(timeout=left))
        except queue.Empty:
            break
    return got


def _delivered_again(gateway: Gateway, seconds: float = 2) -> list[Inbound]:
    """What a new client of worker identity 0 is given within `seconds`: what the broker still
    holds unacknowledged for it."""
    again = gateway.client()
    try:
        return _drain(again.inbox, seconds)
    finally:
        again.stop()


def test_an_order_never_acknowledged_comes_back_to_the_same_worker_identity(
    gateway: Gateway,
) -> None:
    car = gateway.stack.device("car")
    session = car.connect()
    first = gateway.client()
    session.publish(f"kym/v1/devices/{car.id}/orders", b"order one")
    arrived = _drain(first.inbox, 2)
    assert [m.payload for m in arrived] == [b"order one"]
    first.stop()  # as if the worker died before its commit: no PUBACK was sent
    again = gateway.client()
    try:
        back = _drain(again.inbox, 3)
        assert [m.payload for m in back] == [b"order one"]
        assert again.ack(back) == 1  # decided now: acknowledged on the current connection
        assert first.ack(arrived) == 0  # the old connection's message id means nothing now
    finally:
        again.stop()
    assert _delivered_again(gateway) == []  # acknowledged once, never delivered again
    session.close()


class FailingOnPoison(Worker):
    """The real worker, whose decision step fails for any batch holding a `poison` message."""

    attempts = 0

    def _decide(self, messages: list[Inbound]) -> Entries:
        if any(b"poison" in m.payload for m in messages):
            self.attempts += 1
            raise RuntimeError("a decision that cannot be made")
        return super()._decide(messages)


def test_a_message_that_keeps_failing_gets_one_final_rejection_and_is_acknowledged(
    gateway: Gateway,
) -> None:
    car = gateway.stack.device("car")
    session = car.connect()
    session.subscribe(f"kym/v1/devices/{car.id}/results")
    client = gateway.client()
    worker = FailingOnPoison(gateway.stack.ctx, client, Publisher(client))
    worker.start()
    try:
        session.publish(f"kym/v1/devices/{car.id}/orders", b"poison")
        session.publish(f"kym/v1/devices/{car.id}/orders", b"garbage")
        deadline = time.monotonic() + 15
        while len(session.messages) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        results = [wire.decode(token)[1] for _, token in session.messages]
        details = [str(r.get("detail", "")) for r in results]
        assert [r["status"] for r in results] == ["rejected", "rejected"]
        assert [r["reason"] for r in results] == ["invalid_message", "invalid_message"]
        undecidable = f"the gateway failed to decide this message {MAX_TRIES} times"
        assert details.count(undecidable) == 1, details
        assert worker.attempts >= MAX_TRIES
    finally:
        worker.stop()
        worker.join(5)
        client.stop()
    assert _delivered_again(gateway) == []  # both were acknowledged
    session.close()


def test_a_retired_worker_identity_hands_over_its_queued_share_and_gets_no_more(
    gateway: Gateway,
) -> None:
    car = gateway.stack.device("car")
    session = car.connect()
    orders = f"kym/v1/devices/{car.id}/orders"
    staying = gateway.client(0)  # reads its share and never acknowledges
    gateway.client(1).stop()  # identity 1 joined the share group, then nobody ran it
    try:
        for n in range(6):
            session.publish(orders, f"before {n}".encode())
        kept = _drain(staying.inbox, 2)
        decided = retire_identity(gateway.stack.ctx, "127.0.0.1", gateway.stack.port, 1, idle_s=1)
        assert len(kept) + decided == 6, (len(kept), decided)
        with gateway.stack.ctx.db.read() as conn:  # its results marked as the broker took them
            assert order_store.unpublished(conn, gateway.stack.ctx.clock()) == []
        for n in range(4):
            session.publish(orders, f"after {n}".encode())
        assert len(_drain(staying.inbox, 2)) == 4  # the retired identity is dealt nothing
    finally:
        staying.stop()
        session.close()


class RaisingPublisher(Publisher):
    """Publishing the committed results fails (as a broken connection might make it)."""

    def __call__(self, entries: Entries) -> None:
        raise RuntimeError("the hand-off failed")


class CountingWorker(Worker):
    """The real worker, counting its decisions."""

    decisions = 0

    def _decide(self, messages: list[Inbound]) -> Entries:
        self.decisions += 1
        return super()._decide(messages)


def test_a_failure_after_the_commit_neither_decides_nor_acknowledges_again(
    gateway: Gateway,
) -> None:
    ctx = gateway.stack.ctx
    car = gateway.stack.device("car")
    session = car.connect()
    client = gateway.client()
    worker = CountingWorker(ctx, client, RaisingPublisher(client))
    worker.start()
    try:
        session.publish(f"kym/v1/devices/{car.id}/orders", b"garbage")  # rejected, committed
        deadline = time.monotonic() + 10
        while worker.decided < 1 and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(RETRY_PAUSE_S * (MAX_TRIES + 1))  # as long as the retries of a failure took
        assert (worker.decisions, worker.decided) == (1, 1)
        with ctx.db.read() as conn:
            unpublished = order_store.unpublished(conn, ctx.clock())
        assert len(unpublished) == 1  # its result waits in the outbox, for the housekeeper
    finally:
        worker.stop()
        worker.join(5)
        client.stop()
    assert _delivered_again(gateway) == []  # it was acknowledged, once
    session.close()


@pytest.mark.postgres
def test_a_database_that_refuses_writes_keeps_orders_waiting_instead_of_rejecting_them(
    pg_gateway: tuple[Gateway, PgDatabase],
) -> None:
    gateway, database = pg_gateway
    stack = gateway.stack
    shop = stack.party("merchants", {"name": "shop", "category": "fuel", "currency": "EUR"})
    car = setup_payer(stack, "car", rules={"currency": "EUR"})
    client = gateway.client()
    worker = Worker(stack.ctx, client, Publisher(client))
    worker.start()
    try:
        first = car.order(type="pay", payee=shop["id"], amount=100, currency="EUR")
        approved = car.send(first)
        assert approved is not None and approved["status"] == "approved"
        database.read_only(True)  # a standby after a failover: reads answer, writes fail
        order = car.order(type="pay", payee=shop["id"], amount=250, currency="EUR")
        car.send(order, wait=False)
        time.sleep(RETRY_PAUSE_S * (MAX_TRIES + 3))  # longer than a bad message's tries
        assert [m for m in car.messages() if m.get("order_id") == order["order_id"]] == []
        database.read_only(False)
        result = car.result_for(order["order_id"], timeout_s=15)
        assert (result["status"], result["amount"]) == ("approved", 250)
        assert [m["status"] for m in car.messages() if "status" in m] == ["approved"] * 2
    finally:
        worker.stop()
        worker.join(5)
        client.stop()
        car.close()


@pytest.mark.postgres
def test_retiring_an_identity_while_the_database_refuses_writes_fails_and_keeps_its_orders(
    pg_gateway: tuple[Gateway, PgDatabase],
) -> None:
    gateway, database = pg_gateway
    stack = gateway.stack
    shop = stack.party("merchants", {"name": "shop", "category": "fuel", "currency": "EUR"})
    car = setup_payer(stack, "car", rules={"currency": "EUR"})
    gateway.client(1).stop()  # identity 1 joined the share group, then nobody ran it
    try:
        database.read_only(True)
        orders = [car.order(type="pay", payee=shop["id"], amount=10, currency="EUR") for _ in "abc"]
        for order in orders:
            car.send(order, wait=False)  # acknowledged by the broker, queued for identity 1
        with pytest.raises(TimeoutError, match="3 messages undecided"):
            retire_identity(stack.ctx, "127.0.0.1", stack.port, 1, idle_s=1, timeout_s=4)
        assert [m for m in car.messages() if "status" in m] == []
        database.read_only(False)
        assert retire_identity(stack.ctx, "127.0.0.1", stack.port, 1, idle_s=1) == 3
        for order in orders:
            assert car.result_for(order["order_id"], timeout_s=10)["status"] == "approved"
    finally:
        car.close()


def test_a_full_disk_keeps_orders_waiting_and_says_so_instead_of_rejecting_them(
    disk_gateway: Gateway, small_disk: Path
) -> None:
    """A full disk refuses a batch's pages while the write of none that `takes_writes` tries
    goes through: the orders wait unacknowledged (never a final `rejected` for the gateway's
    own trouble), `/healthz` answers 503, and once there is room every order is decided."""
    stack = disk_gateway.stack
    shop = stack.party("merchants", {"name": "shop", "category": "fuel", "currency": "EUR"})
    car = setup_payer(stack, "car", rules={"currency": "EUR"})
    client = disk_gateway.client()
    worker = Worker(stack.ctx, client, Publisher(client))
    worker.start()
    try:
        first = car.send(car.order(type="pay", payee=shop["id"], amount=100, currency="EUR"))
        assert first is not None and first["status"] == "approved"
        filler = fill(small_disk)
        orders = [
            car.order(type="pay", payee=shop["id"], amount=10 + n, currency="EUR") for n in range(5)
        ]
        for order in orders:
            car.send(order, wait=False)
        time.sleep(RETRY_PAUSE_S * (MAX_TRIES + 3))  # longer than a bad message's tries
        assert [m for m in car.messages() if "status" in m] == [first]
        health = stack.api.get("/healthz")
        assert (health.status_code, health.json()) == (503, {"status": "database_unavailable"})
        filler.unlink()
        for order in orders:
            result = car.result_for(order["order_id"], timeout_s=15)
            assert (result["status"], result["amount"]) == ("approved", order["amount"])
        assert [m["status"] for m in car.messages() if "status" in m] == ["approved"] * 6
    finally:
        worker.stop()
        worker.join(5)
        client.stop()
        car.close()


def test_a_session_the_server_ends_is_never_blamed_on_the_orders(
    pg_gateway: tuple[Gateway, PgDatabase],
) -> None:
    """When PostgreSQL PANICs (a WAL segment it cannot write on a full disk) it ends every
    session and may take writes again a moment later: the batch that lost its session is
    kept like one of an unreachable database, never counted towards its orders' 3 tries."""
    gateway, _ = pg_gateway
    ctx = gateway.stack.ctx
    with pytest.raises(DBAPIError) as ended, ctx.db.transaction(held=True) as conn:
        conn.exec_driver_sql("SELECT pg_terminate_backend(pg_backend_pid())")
    client = gateway.client()
    try:
        worker = Worker(ctx, client, Publisher(client))
        assert ctx.db.takes_writes()  # back at once, as after a quick crash recovery
        assert not worker.database_is_up(ended.value)
    finally:
        client.stop()
