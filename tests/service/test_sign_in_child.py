"""Results signed by the signer's child process (`gateway.orders.signer`) while the worker writes
the batch: the same tokens a device verifies with the gateway's key, and a child that is gone
or stalled only leaves the signing to the worker."""

from __future__ import annotations

import logging
import os
import select
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from devices import wire
from gateway.orders import signer as signer_module
from gateway.orders.decide import decide_messages
from gateway.orders.signer import Signer
from tests.support.world import Dev, World

OPEN = {"currency": "EUR"}
WAIT_S = 20.0  # for the child's start on a busy machine


@pytest.fixture
def signer(world: World) -> Iterator[Signer]:
    found = Signer(world.ctx.pki.signer.private_key)
    found.start()
    wait_until_ready(found)
    yield found
    found.stop()


def decide_pays(world: World, car: Dev, shop: str, count: int, signer: Signer) -> list[Any]:
    """The payloads of `count` pays decided in one batch, each token verified with the
    gateway's certificate as a device verifies it."""
    orders = [car.order(type="pay", payee=shop, amount=1, currency="EUR") for _ in range(count)]
    messages = [(car.topic, car.sign(order)) for order in orders]
    entries = decide_messages(world.ctx, world.keyring, messages, world.ctx.clock(), signer=signer)
    public = world.ctx.pki.signer.private_key.public_key()
    payloads = []
    for _id, _topic, token in entries:
        alg, payload = wire.decode(token)
        wire.verify(token, alg, public)
        payloads.append(payload)
    return [p for p in payloads if "status" in p]


def wait_until_ready(signer: Signer) -> None:
    """The child holds the key (it says so once it has started): until then the worker signs."""
    child = signer._child
    assert child is not None and child.stdout is not None
    deadline = time.monotonic() + WAIT_S
    while not signer._ready() and time.monotonic() < deadline:
        select.select([child.stdout.fileno()], [], [], 0.1)
    assert signer._ready()


def test_the_child_signs_a_batch_s_results_with_the_gateway_key(
    world: World, signer: Signer
) -> None:
    shop = world.merchant()["id"]
    car = world.device("car", rules=OPEN)
    results = decide_pays(world, car, shop, 5, signer)
    assert [r["status"] for r in results] == ["approved"] * 5
    assert signer.signed_by_child >= 5  # the results, and the payee's and owners' messages


def test_when_the_child_dies_the_worker_signs_and_a_new_child_is_started(
    world: World, signer: Signer, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    shop = world.merchant()["id"]
    car = world.device("car", rules=OPEN)
    child = signer._child
    assert child is not None
    child.kill()
    child.wait()
    signed = signer.signed_by_child
    with caplog.at_level(logging.WARNING, logger="kym.signer"):
        results = decide_pays(world, car, shop, 3, signer)
    assert [r["status"] for r in results] == ["approved"] * 3
    assert signer.signed_by_child == signed  # signed by the worker
    assert "the signer exited" in caplog.text
    monkeypatch.setattr(signer_module, "RESTART_AFTER_S", 0.0)
    assert decide_pays(world, car, shop, 1, signer)  # starts a new child; signed here meanwhile
    assert signer._child is not None and signer._child.pid != child.pid
    wait_until_ready(signer)
    assert decide_pays(world, car, shop, 2, signer)
    assert signer.signed_by_child > signed


def test_a_child_that_does_not_answer_is_ended_and_the_worker_signs(
    world: World, signer: Signer, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    shop = world.merchant()["id"]
    car = world.device("car", rules=OPEN)
    child = signer._child
    assert child is not None
    os.kill(child.pid, signal.SIGSTOP)
    monkeypatch.setattr(signer_module, "ANSWER_WITHIN_S", 0.2)
    signed = signer.signed_by_child
    with caplog.at_level(logging.WARNING, logger="kym.signer"):
        results = decide_pays(world, car, shop, 2, signer)
    assert [r["status"] for r in results] == ["approved"] * 2
    assert signer.signed_by_child == signed
    assert "did not answer" in caplog.text
    assert child.poll() is not None  # ended (killed even while stopped)
    assert signer._child is None


def test_payloads_marshal_cannot_carry_are_signed_by_the_worker(signer: Signer) -> None:
    payload = {"at": object()}
    with pytest.raises(TypeError):  # not JSON either: the worker's own signing says so
        signer.sign_all([payload])()
