"""The results a device has received, by order id, and waiting for the one you need."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

from devices.sdk.errors import ResultTimeout
from devices.sdk.messages import Result


class ResultBoard:
    """The latest result of each order; a final result is never replaced by one that is not
    (`pending_approval`, `rate_limited`)."""

    def __init__(self, unmatched_kept: int = 100) -> None:
        self._latest: dict[str, Result] = {}
        self._unmatched: deque[Result] = deque(maxlen=unmatched_kept)  # order_id null
        self._changed = threading.Condition()

    def post(self, result: Result) -> None:
        with self._changed:
            if result.order_id is None:
                self._unmatched.append(result)
            elif not (_fits(self._latest.get(result.order_id), True) and not result.is_final):
                self._latest[result.order_id] = result  # a late non-final one can't hide it
            self._changed.notify_all()

    def latest(self, order_id: str) -> Result | None:
        with self._changed:
            return self._latest.get(order_id)

    def forget(self, order_id: str) -> None:
        with self._changed:
            self._latest.pop(order_id, None)

    def wait_for(self, order_id: str, timeout_s: float, final: bool) -> Result:
        """The order's result; with `final`, not a `pending_approval` or `rate_limited` one."""

        def found() -> Result | None:
            result = self._latest.get(order_id)
            return result if _fits(result, final) else None

        kind = "final result" if final else "result"
        return self._wait(found, timeout_s, f"no {kind} for {order_id}")

    def wait_for_unmatched(self, timeout_s: float) -> Result:
        """The oldest result without an order id not yet taken."""
        return self._wait(
            lambda: self._unmatched.popleft() if self._unmatched else None,
            timeout_s,
            "no rejection without an order id",
        )

    def _wait(self, found: Callable[[], Result | None], timeout_s: float, what: str) -> Result:
        with self._changed:
            result = self._changed.wait_for(found, timeout_s)
        if result is None:
            raise ResultTimeout(f"{what} within {timeout_s} s")
        return result


def _fits(result: Result | None, final: bool) -> bool:
    return result is not None and (result.is_final or not final)
