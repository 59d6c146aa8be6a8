"""The SDK re-sends every order without a final result by itself, byte for byte: on reconnect
and every `resend_after` seconds (contract section 6, "Delivery")."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterator

import pytest

from devices.sdk import ResultTimeout
from tests.sdk.gatewayside import GatewaySide
from tests.support.stack import Http

RESEND_AFTER_S = 0.5


@pytest.fixture
def gateway_side(http: Http) -> Iterator[GatewaySide]:
    side = GatewaySide(http.stack)
    yield side
    side.close()


def _arrivals(gateway_side: GatewaySide, seconds: float) -> list[bytes]:
    """Every order payload that reaches the gateway's subscription within `seconds`."""
    got, deadline = [], time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            got.append(gateway_side.next_order(timeout_s=left).payload)
        except queue.Empty:
            break
    return got


def test_an_unanswered_order_is_resent_byte_for_byte_until_a_final_result(
    http: Http, gateway_side: GatewaySide
) -> None:
    identity, _ = http.provision("car")
    me = identity.device_id
    with http.client(identity, resend_after=RESEND_AFTER_S) as car:
        car.connect()
        order_id = car.pay("mer_x", 120)
        sent = car.journal.jws_of(order_id)
        assert sent is not None
        resent = _arrivals(gateway_side, 2.5)
        assert len(resent) >= 3, resent  # the first send and at least two re-sends
        assert set(resent) == {sent.encode()}
        gateway_side.publish(me, gateway_side.result(me, order_id, "approved"))
        assert car.wait_for_result(order_id).status == "approved"
        _arrivals(gateway_side, 0.3)  # what was in flight when the result came
        assert _arrivals(gateway_side, 2 * RESEND_AFTER_S + 1) == []
        assert car.journal.unfinished() == []


@pytest.mark.parametrize(
    ("status", "reason"), [("pending_approval", None), ("rejected", "rate_limited")]
)
def test_pending_approval_and_rate_limited_are_not_final_so_the_order_is_resent(
    http: Http, gateway_side: GatewaySide, status: str, reason: str | None
) -> None:
    identity, _ = http.provision("fridge", kind="fridge")
    me = identity.device_id
    with http.client(identity, resend_after=RESEND_AFTER_S) as fridge:
        fridge.connect()
        order_id = fridge.pay("mer_x", 9000)
        gateway_side.next_order(timeout_s=5)
        result = gateway_side.result(me, order_id, status, reason=reason)
        gateway_side.publish(me, result)
        fridge.wait_for_result(order_id, final=False)
        _arrivals(gateway_side, 0.2)
        again = gateway_side.next_order(timeout_s=3 * RESEND_AFTER_S + 1)
        assert again.payload.decode() == fridge.journal.jws_of(order_id)
        assert [o for o, _ in fridge.journal.unfinished()] == [order_id]


def test_wait_for_result_waits_past_rate_limited_while_the_order_is_resent(
    http: Http, gateway_side: GatewaySide
) -> None:
    """Contract section 10: `rate_limited` is not final; the order sent again is decided then."""
    identity, _ = http.provision("charger", kind="ev_charger")
    me = identity.device_id
    with http.client(identity, resend_after=RESEND_AFTER_S) as charger:
        charger.connect()
        order_id = charger.pay("mer_x", 250)
        first = gateway_side.next_order(timeout_s=5).payload
        gateway_side.publish(
            me, gateway_side.result(me, order_id, "rejected", reason="rate_limited")
        )
        limited = charger.wait_for_result(order_id, timeout_s=5, final=False)
        assert (limited.status, limited.reason, limited.is_final) == (
            "rejected",
            "rate_limited",
            False,
        )
        with pytest.raises(ResultTimeout):
            charger.wait_for_result(order_id, timeout_s=0.3)
        again = gateway_side.next_order(timeout_s=3 * RESEND_AFTER_S + 1).payload
        assert again == first  # the journal's re-send, byte for byte
        approved = gateway_side.result(me, order_id, "approved", payment_id="pay_9", amount=250)
        later = threading.Timer(0.3, gateway_side.publish, (me, approved))
        later.start()
        final = charger.wait_for_result(order_id, timeout_s=5)
        later.join()
        assert (final.status, final.payment_id) == ("approved", "pay_9")
        gateway_side.publish(
            me, gateway_side.result(me, order_id, "rejected", reason="rate_limited")
        )
        time.sleep(0.3)  # a late refusal of a re-send does not hide the decision
        assert charger.result_of(order_id) == final
        assert charger.journal.unfinished() == []


def test_with_resend_after_none_the_device_sends_an_order_once(
    http: Http, gateway_side: GatewaySide
) -> None:
    identity, _ = http.provision("meter", kind="smart_meter")
    with http.client(identity, resend_after=None) as meter:
        meter.connect()
        meter.pay("mer_x", 10)
        assert len(_arrivals(gateway_side, 2.0)) == 1


def test_resends_keep_to_their_rate_however_short_resend_after_is(
    http: Http, gateway_side: GatewaySide
) -> None:
    identity, _ = http.provision("meter", kind="smart_meter")
    with pytest.raises(ValueError, match="resend_after"):
        http.client(identity, resend_after=0)  # would spin, re-sending without pause
    with http.client(identity, resend_after=0.1) as meter:
        meter.connect()
        for n in range(40):
            meter.pay("mer_x", 100 + n)
        first = _arrivals(gateway_side, 0.5)
        resent = _arrivals(gateway_side, 3.0)  # none is answered: all stay due
    # RESEND_PER_S (8) a second: at most a full budget plus 3 s of refill, not 10 passes a
    # second of 8 each
    assert len(first) >= 40 and len(resent) <= 8 + 3 * 8 + 2, (len(first), len(resent))
    assert len(resent) >= 8, len(resent)


def test_new_orders_and_resends_share_one_budget_new_orders_first(
    http: Http, gateway_side: GatewaySide
) -> None:
    identity, _ = http.provision("meter", kind="smart_meter")
    with http.client(identity, resend_after=0.2) as meter:
        meter.connect()
        for n in range(10):
            meter.pay("mer_x", 100 + n)  # never answered: due again every 0.2 s
        _arrivals(gateway_side, 1.5)
        new: set[bytes] = set()
        arrivals: list[bytes] = []
        start = time.monotonic()
        for n in range(24):  # the application sends 8 new orders a second for 3 s
            jws = meter.journal.jws_of(meter.pay("mer_y", 500 + n))
            assert jws is not None
            new.add(jws.encode())
            arrivals += _arrivals(gateway_side, start + (n + 1) / 8 - time.monotonic())
        arrivals += _arrivals(gateway_side, 0.3)
    resent = [payload for payload in arrivals if payload not in new]
    assert new <= set(arrivals)  # every new order went at once
    # RESEND_PER_S (8) a second for both: the application's orders leave the re-sends no more
    # than the budget held when they began (and a little for the application's own pauses)
    assert len(resent) <= 8 + 4, len(resent)
