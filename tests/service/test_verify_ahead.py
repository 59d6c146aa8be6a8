"""Signatures checked ahead by the verifier's child process (`gateway.orders.verifier`): what it
finds is taken for certificates still valid in the decision's transaction and nothing else,
and a child that is gone, stopped or behind only leaves the work to the transaction."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from devices import wire
from gateway.orders import child as pipes
from gateway.orders import verifier as verifier_module
from gateway.orders.decide import decide_messages
from gateway.orders.verified import Verified
from gateway.orders.verifier import Verifier
from tests.support.openssl import make_openssl_csr
from tests.support.world import Dev, World

OPEN = {"currency": "EUR"}
WAIT_S = 20.0  # the child's start (imports) on a busy machine; never reached when it works


@pytest.fixture
def verifier(world: World) -> Iterator[Verifier]:
    found = Verifier(world.keyring)
    found.start()
    yield found
    found.stop()


def decide(world: World, messages: list[tuple[str, bytes]], ahead: list[Any]) -> list[Any]:
    """Statuses and reasons of deciding `messages` with `ahead` as what was found before."""
    entries = decide_messages(world.ctx, world.keyring, messages, world.ctx.clock(), None, ahead)
    out = [wire.decode(token)[1] for _id, _topic, token in entries]
    return [(m["status"], m["reason"]) for m in out if "status" in m]


def pay(dev: Dev, payee: str, key: wire.PrivateKey | None = None) -> bytes:
    return dev.sign(dev.order(type="pay", payee=payee, amount=1, currency="EUR"), key)


def known_device(world: World, shop: str) -> Dev:
    """A device whose key the worker's ring holds (it has paid once)."""
    car = world.device("car", rules=OPEN)
    assert car.send(pay(car, shop))["status"] == "approved"
    return car


def test_the_child_verifies_a_known_device_s_orders_and_the_worker_takes_its_findings(
    world: World, verifier: Verifier
) -> None:
    shop = world.merchant()["id"]
    car = known_device(world, shop)
    (serial,) = world.keyring.serials_of(car.id)
    stranger = ec.generate_private_key(ec.SECP256R1())
    messages = [(car.topic, pay(car, shop)), (car.topic, pay(car, shop, stranger))]
    tickets = [verifier.submit(topic, raw) for topic, raw in messages]
    assert None not in tickets
    verifier.flush()
    found = verifier.found(tickets, wait_s=WAIT_S)
    assert found == [
        Verified("ES256", frozenset({serial}), frozenset({serial})),
        Verified("ES256", frozenset({serial}), frozenset()),
    ]
    assert verifier.answered == 2
    statuses = decide(world, messages, found)
    assert statuses == [("approved", None), ("rejected", "invalid_signature")]


def test_an_unknown_device_s_order_is_left_to_the_transaction(
    world: World, verifier: Verifier
) -> None:
    car = world.device("car", rules=OPEN)  # has never paid: its key is not in the ring yet
    assert verifier.submit(car.topic, pay(car, world.merchant()["id"])) is None
    assert verifier.submit("not/an/orders/topic", b"x") is None


def test_a_finding_counts_only_for_a_certificate_still_valid(world: World) -> None:
    shop = world.merchant()["id"]
    car = known_device(world, shop)
    (old_serial,) = world.keyring.serials_of(car.id)
    key_path, csr = make_openssl_csr(world.tmp, "car-new")
    rotated = world.api.post(
        f"/v1/devices/{car.id}/certificates", json={"csr": csr}, headers=car.integrator
    )
    assert rotated.status_code == 201, rotated.text
    new_key = load_pem_private_key(key_path.read_bytes(), None)
    assert isinstance(new_key, wire.PrivateKey)
    assert car.send(pay(car, shop, new_key))["status"] == "approved"  # the old one retires
    # the old key's "good" (as a child that saw the old certificate would answer) is not taken
    stale = Verified("ES256", frozenset({old_serial}), frozenset({old_serial}))
    assert decide(world, [(car.topic, pay(car, shop))], [stale]) == [
        ("rejected", "invalid_signature")
    ]
    # nor a finding made with another algorithm than the header's
    (new_serial,) = world.keyring.serials_of(car.id)
    other_alg = Verified("EdDSA", frozenset({new_serial}), frozenset())
    assert decide(world, [(car.topic, pay(car, shop, new_key))], [other_alg]) == [
        ("approved", None)
    ]


def test_a_record_the_child_fails_on_goes_unanswered_and_the_child_goes_on(
    world: World, verifier: Verifier
) -> None:
    shop = world.merchant()["id"]
    car = known_device(world, shop)
    child = verifier._child
    assert child is not None and child.stdin is not None
    os.write(child.stdin.fileno(), next(pipes.frames([pipes.record("not", "a job")])))
    ticket = verifier.submit(car.topic, pay(car, shop))
    verifier.flush()
    (found,) = verifier.found([ticket], wait_s=WAIT_S)
    assert found is not None and found.good == frozenset(world.keyring.serials_of(car.id))
    assert child.poll() is None


def test_when_the_child_dies_the_worker_verifies_and_a_new_child_is_started(
    world: World, verifier: Verifier, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    shop = world.merchant()["id"]
    car = known_device(world, shop)
    child = verifier._child
    assert child is not None
    child.kill()
    child.wait()
    raw = pay(car, shop)
    with caplog.at_level(logging.WARNING, logger="kym.verifier"):
        ticket = verifier.submit(car.topic, raw)
        verifier.flush()
    assert "the signature verifier exited" in caplog.text
    assert verifier.found([ticket]) == [None]
    assert decide(world, [(car.topic, raw)], [None]) == [("approved", None)]
    monkeypatch.setattr(verifier_module, "RESTART_AFTER_S", 0.0)
    again = pay(car, shop)
    ticket = verifier.submit(car.topic, again)
    verifier.flush()  # starts a new child, which gets the key again with this order
    assert verifier._child is not None and verifier._child.pid != child.pid
    (found,) = verifier.found([ticket], wait_s=WAIT_S)
    assert found is not None and found.good == frozenset(world.keyring.serials_of(car.id))


def test_the_network_thread_asks_the_kernel_about_the_child_at_most_every_half_second(
    world: World, verifier: Verifier, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """`flush` runs after every read from the broker; `Popen.poll` is a `waitpid`, which lets go
    of the GIL: it is asked once per POLL_EVERY_S, and a child that died meanwhile is found
    within it (its orders meanwhile are the transaction's to verify)."""
    shop = world.merchant()["id"]
    car = known_device(world, shop)
    child = verifier._child
    assert child is not None
    asked: list[int] = []
    real_poll = child.poll

    def poll() -> int | None:
        asked.append(1)
        return real_poll()

    monkeypatch.setattr(child, "poll", poll)
    first = verifier.submit(car.topic, pay(car, shop))
    verifier.flush()
    assert verifier.found([first], wait_s=WAIT_S)[0] is not None
    raw = pay(car, shop)
    for _ in range(200):
        verifier.submit(car.topic, raw)
        verifier.flush()
    assert len(asked) <= 2  # once per half second at most (the two calls may straddle one)
    child.kill()
    child.wait()
    deadline = time.monotonic() + pipes.POLL_EVERY_S + WAIT_S
    with caplog.at_level(logging.WARNING, logger="kym.verifier"):
        while "the signature verifier exited" not in caplog.text:
            assert time.monotonic() < deadline, "the dead child was never noticed"
            ticket = verifier.submit(car.topic, raw)
            verifier.flush()
            time.sleep(0.01)
    assert verifier.found([ticket]) == [None]
    assert decide(world, [(car.topic, pay(car, shop))], [None]) == [("approved", None)]


def test_a_child_that_falls_behind_never_blocks_the_network_thread(
    world: World, verifier: Verifier
) -> None:
    shop = world.merchant()["id"]
    car = known_device(world, shop)
    child = verifier._child
    assert child is not None
    first = verifier.submit(car.topic, pay(car, shop))
    verifier.flush()
    assert verifier.found([first], wait_s=WAIT_S)[0] is not None  # it is up and has the key
    os.kill(child.pid, signal.SIGSTOP)
    try:
        raw = pay(car, shop)
        tickets = [verifier.submit(car.topic, raw) for _ in range(2_000)]  # ~1 MB: pipe full

        def flush_all() -> None:
            for _ in range(20):
                verifier.flush()

        flushing = threading.Thread(target=flush_all, daemon=True)
        flushing.start()
        flushing.join(WAIT_S)
        assert not flushing.is_alive(), "flush blocked on the stopped child"
    finally:
        os.kill(child.pid, signal.SIGCONT)
    found = verifier.found(tickets, wait_s=2.0)
    assert found[0] is not None  # what fitted in the pipe was verified once it went on
    assert found[-1] is None  # what did not is the transaction's to verify


def test_the_child_exits_when_the_gateway_is_killed(tmp_path: Any) -> None:
    script = (
        "import sys, time\n"
        "from gateway.orders.intake import KeyRing\n"
        "from gateway.orders.verifier import Verifier\n"
        "v = Verifier(KeyRing()); v.start(); print(v._child.pid, flush=True); time.sleep(120)\n"
    )
    gateway = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert gateway.stdout is not None
    child_pid = int(gateway.stdout.readline())
    gateway.kill()  # SIGKILL: no clean-up runs
    gateway.wait()
    gateway.stdout.close()
    deadline = time.monotonic() + WAIT_S
    while _alive(child_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(child_pid)


def _alive(pid: int) -> bool:
    """Running and not a zombie (the child's parent is gone; init reaps it)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_the_helper_children_are_out_of_reach_of_a_terminals_ctrl_c() -> None:
    """A Ctrl-C in the terminal of `kym serve` signals its whole process group: a helper still
    importing died of it with a KeyboardInterrupt traceback among the gateway's lines."""
    child = pipes.spawn("gateway.orders.verifier")
    try:
        assert os.getsid(child.pid) == child.pid != os.getpgid(0)
    finally:
        pipes.end(child)
