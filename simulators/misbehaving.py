"""A device that misbehaves on purpose, and checks that each mischief gets its refusal.

Each `act` commits the next mischief of a fixed rotation. Replays and conflicts reuse one of
its own earlier orders whose final result is in (so that the original is surely the first the
gateway saw). What it expects (contract sections 5 and 6):

    replay         the same JWS again            the first result again, "duplicate": true
    conflict       an old order id, new payload  rejected, idempotency_conflict
    forgery        signed with another key       rejected, invalid_signature
    stale          ts 1000 s in the past         rejected, stale_order
    over_limit     above the rules' max_amount   declined, amount_over_limit
    garbage        bytes that are no JWS         rejected, invalid_message (order_id null)
    impersonation  another device_id, own key    rejected, invalid_message

Anything else is a surprise, kept in `surprises` and reported to the recorder.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from devices.sdk import DeviceClient, PreparedOrder, Result, generate_key
from devices.sdk.messages import pay_fields
from simulators.base import SimDevice
from simulators.metrics import Recorder

MISCHIEF = ("replay", "conflict", "forgery", "stale", "over_limit", "garbage", "impersonation")
STALE_BY_S = 1000


@dataclass(frozen=True)
class Expected:
    mischief: str
    status: str
    reason: str | None
    duplicate: bool = False


class MisbehavingDevice(SimDevice):
    """Pays small amounts to `payee` and, in between, tries every trick in MISCHIEF."""

    kind = "other"

    def __init__(
        self,
        client: DeviceClient,
        *,
        payee: str,
        max_amount_minor: int,
        rng: random.Random | None = None,
        recorder: Recorder | None = None,
        interval_s: float | None = None,
        currency: str = "EUR",
        mischief: tuple[str, ...] = MISCHIEF,
    ) -> None:
        super().__init__(
            client, rng=rng, recorder=recorder, interval_s=interval_s, currency=currency
        )
        self.payee, self.max_amount_minor, self.mischief = payee, max_amount_minor, mischief
        self.expected: dict[str | None, list[Expected]] = {}
        self.finished: dict[str, tuple[PreparedOrder, Result]] = {}
        self.sent: dict[str, PreparedOrder] = {}
        self.refusals: list[tuple[str, Result]] = []  # (mischief, the refusal it got)
        self.surprises: list[str] = []
        self._turn = 0

    def act(self, now: float) -> str | None:
        """The next mischief; a plain small payment when a replay has nothing to reuse yet."""
        mischief = self.mischief[self._turn % len(self.mischief)]
        if mischief in ("replay", "conflict") and not self.finished:
            return self.honest_payment()
        self._turn += 1
        order_id: str | None = getattr(self, mischief)()
        return order_id

    def honest_payment(self) -> str:
        prepared = self.client.prepare(pay_fields(self.payee, 1, self.currency, "honest"))
        self.sent[prepared.order_id] = prepared
        self.recorder.sent(self.device_id, prepared.order_id)
        return self.client.submit(prepared)

    def replay(self) -> str:
        prepared, first = self.rng.choice(sorted(self.finished.values(), key=_by_id))
        expected = Expected("replay", first.status, first.reason, True)
        self._expect(prepared.order_id, expected, counted=False)  # a duplicate: no latency
        self.client.publish_raw(prepared.jws.encode())
        return prepared.order_id

    def conflict(self) -> str:
        prepared, _ = self.rng.choice(sorted(self.finished.values(), key=_by_id))
        altered = {**prepared.payload, "amount": prepared.payload["amount"] + 1}
        self._expect(prepared.order_id, Expected("conflict", "rejected", "idempotency_conflict"))
        self.client.publish_raw(self.client.sign(altered).encode())
        return prepared.order_id

    def forgery(self) -> str:
        payload = self.client.prepare(pay_fields(self.payee, 1, self.currency)).payload
        self._expect(payload["order_id"], Expected("forgery", "rejected", "invalid_signature"))
        self.client.publish_raw(self.client.sign(payload, key=generate_key()).encode())
        return str(payload["order_id"])

    def stale(self) -> str:
        prepared = self.client.prepare(
            pay_fields(self.payee, 1, self.currency), ts=int(self.client.clock()) - STALE_BY_S
        )
        self._expect(prepared.order_id, Expected("stale", "rejected", "stale_order"))
        return self.client.submit(prepared)

    def over_limit(self) -> str:
        prepared = self.client.prepare(
            pay_fields(self.payee, self.max_amount_minor + 1, self.currency, "far too much")
        )
        self._expect(prepared.order_id, Expected("over_limit", "declined", "amount_over_limit"))
        return self.client.submit(prepared)

    def garbage(self) -> None:
        self._expect(None, Expected("garbage", "rejected", "invalid_message"))
        self.client.publish_raw(b"\x00\xffnot a JWS at all")

    def impersonation(self) -> str:
        payload = {
            **self.client.prepare(pay_fields(self.payee, 1, self.currency)).payload,
            "device_id": "dev_somebody_else",
        }
        self._expect(payload["order_id"], Expected("impersonation", "rejected", "invalid_message"))
        self.client.publish_raw(self.client.sign(payload).encode())
        return str(payload["order_id"])

    def on_result(self, result: Result, now: float) -> None:
        waiting = self.expected.get(result.order_id)
        if waiting:
            expected = waiting.pop(0)
            if not waiting:
                del self.expected[result.order_id]
            self._check(expected, result)
        elif result.order_id in self.sent and result.is_final:
            self.finished[result.order_id] = (self.sent.pop(result.order_id), result)

    @property
    def outstanding(self) -> int:
        """Mischief still waiting for its refusal, and honest orders for their result."""
        return sum(len(waiting) for waiting in self.expected.values()) + len(self.sent)

    def _expect(self, order_id: str | None, expected: Expected, counted: bool = True) -> None:
        self.expected.setdefault(order_id, []).append(expected)
        if order_id is not None and counted:
            self.recorder.sent(self.device_id, order_id)

    def _check(self, expected: Expected, result: Result) -> None:
        got = (result.status, result.reason, result.duplicate)
        if got == (expected.status, expected.reason, expected.duplicate):
            self.refusals.append((expected.mischief, result))
            return
        surprise = (
            f"{self.device_id} {expected.mischief} {result.order_id}: expected "
            f"{expected.status}/{expected.reason} duplicate={expected.duplicate}, "
            f"got {result.status}/{result.reason} duplicate={result.duplicate}"
        )
        self.surprises.append(surprise)
        self.recorder.surprise(surprise)


def _by_id(item: tuple[PreparedOrder, Result]) -> str:
    return item[0].order_id
