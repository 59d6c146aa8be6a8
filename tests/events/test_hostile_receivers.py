"""Webhook receivers that misbehave, as real servers on loopback: one that answers a byte at a
time, one that never answers. An attempt ends within the contract's 10 seconds however the
receiver behaves, so that it never outlives its lease nor holds the worker's slots."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

from gateway.context import Context
from gateway.events.delivery import DeliveryWorker
from tests.events.helpers import add_webhook, deliveries, run_rounds
from tests.events.receiver import receiver
from tests.support.world import World


@contextmanager
def dripping(every_s: float = 0.3) -> Iterator[str]:
    """A server that reads the request, then sends its answer's head one byte at a time,
    each well within a read timeout (so httpx's per-read timeouts never fire)."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            conn.recv(65536)
            for byte in b"HTTP/1.1 200 OK\r\nx-slow: " + b"a" * 1000:
                if stop.wait(every_s):
                    return
                try:
                    conn.send(bytes([byte]))
                except OSError:
                    return

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.getsockname()[1]}/hook"
    finally:
        stop.set()
        server.close()


def test_a_receiver_that_answers_a_byte_at_a_time_is_cut_off(world: World, ctx: Context) -> None:
    car = world.device("car")
    with dripping() as url:
        webhook = add_webhook(world.api, car.owner, url, ["device.status_changed"])
        assert car.act("suspend").status_code == 200
        worker = DeliveryWorker(ctx, timeout_s=1.0)
        began = time.monotonic()
        worker.tick()
        worker.wait_idle(timeout_s=30)
        took = time.monotonic() - began
    assert took < 3, f"the attempt took {took:.1f} s with a 1 s timeout"
    (attempt,) = deliveries(world.api, car.owner, webhook["id"])
    assert not attempt["delivered"] and attempt["status_code"] is None
    assert "within 1 s" in attempt["error"]


def test_a_receiver_that_never_answers_is_given_up_on_in_time(world: World, ctx: Context) -> None:
    car = world.device("car")
    silent = socket.create_server(("127.0.0.1", 0))  # accepts (backlog), never reads or answers
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
        webhook = add_webhook(world.api, car.owner, url, ["device.status_changed"])
        assert car.act("suspend").status_code == 200
        began = time.monotonic()
        run_rounds(DeliveryWorker(ctx, timeout_s=1.0), rounds=1)
        assert time.monotonic() - began < 3
    finally:
        silent.close()
    (attempt,) = deliveries(world.api, car.owner, webhook["id"])
    assert not attempt["delivered"] and attempt["status_code"] is None


def test_one_partys_backlog_at_a_silent_receiver_does_not_hold_up_another(
    world: World, ctx: Context
) -> None:
    flooding, other = world.device("flooding"), world.device("other")
    silent = socket.create_server(("127.0.0.1", 0))
    try:
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/hook"
        add_webhook(world.api, flooding.owner, url, ["device.status_changed"])
        for _ in range(6):  # twelve events, every attempt at them lasts the whole timeout
            assert flooding.act("suspend").status_code == 200
            assert flooding.act("resume").status_code == 200
        worker = DeliveryWorker(ctx, timeout_s=1.0, concurrency=2, retry_delays_s=(60,))
        worker.fan_out(ctx.clock(), not ctx.db.is_sqlite)  # its backlog is the older
        with receiver() as hook:
            add_webhook(world.api, other.owner, hook.url, ["device.status_changed"])
            assert other.act("suspend").status_code == 200
            began = time.monotonic()
            worker.start()
            try:
                assert hook.wait_for(1, timeout_s=10), "never delivered"
                waited = hook.times[0] - began
            finally:
                worker.stop()
                worker.join(5)
    finally:
        silent.close()
    assert waited < 2, f"the other party's first attempt waited {waited:.1f} s"
