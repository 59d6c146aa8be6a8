"""The webhook delivery worker: a thread of `kym serve`, apart from the order path.

Every `interval_s` it makes an attempt row for each new event and matching webhook (`fan_out`),
then takes the attempts that are due, each party's in turn (leased, so that several `kym serve`
processes never take the same one at once), and POSTs them, at most `concurrency` at a time,
each from a daemon thread (a slow endpoint holds up neither the others nor the process's exit;
a party with attempts running waits its turn behind those without), signed under the
Standard Webhooks specification (the `standardwebhooks` package). A 2xx within `TIMEOUT_S` delivers;
anything else (redirects are not followed, an attempt is cut off once `TIMEOUT_S` has passed
however slowly the receiver answers, and a URL that no longer passes the address check is not
even tried) is logged as an attempt and tried again after the next of `RETRY_DELAYS_S`,
until the attempts are used up. Every attempt is in the delivery log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from standardwebhooks.webhooks import Webhook

from gateway.context import Context
from gateway.db_faults import FaultLog
from gateway.events import attempts, metrics, ssrf
from gateway.events import store as event_store
from gateway.events.deadline import Deadline
from gateway.events.envelope import body_of

log = logging.getLogger("kym.webhooks")
# After attempt n fails, attempt n+1 comes RETRY_DELAYS_S[n-1] later: 9 attempts, the last
# about 18.6 hours after the first (the events are kept 48 hours).
RETRY_DELAYS_S: tuple[float, ...] = (5, 60, 300, 1800, 3600, 7200, 18000, 36000)
TIMEOUT_S = 10.0
LEASE_S = 30.0  # an attempt takes at most TIMEOUT_S; a crash frees it
KEEP_EVENTS = timedelta(hours=48)
FAN_OUT_CHUNK = 500  # events a transaction (on SQLite it holds the write lock a few ms)
FAN_OUT_BUDGET_S = 1.0  # a round's fanning out, before it starts the due attempts


def sign(secret: str, event: dict[str, Any], at: datetime) -> tuple[str, dict[str, str]]:
    """The body and the Standard Webhooks headers for one attempt, signed at `at`."""
    body, unix_s = body_of(event), int(at.timestamp())
    # the package reads `at` as UTC whatever its zone: hand it the instant the header names
    signature = Webhook(secret).sign(event["id"], datetime.fromtimestamp(unix_s, UTC), body)
    headers = {
        "webhook-id": event["id"],
        "webhook-timestamp": str(unix_s),
        "webhook-signature": signature,
        "content-type": "application/json",
        "user-agent": "kym-webhooks/1",
    }
    return body, headers


class DeliveryWorker(threading.Thread):
    """Fans events out to webhooks and delivers them; `stop()` ends it within a second or so."""

    def __init__(
        self,
        ctx: Context,
        *,
        interval_s: float = 0.5,
        retry_delays_s: Sequence[float] = RETRY_DELAYS_S,
        resolver: ssrf.Resolver = ssrf.resolve,
        public: Callable[[ssrf.IpAddress], bool] = ssrf.is_public,
        concurrency: int = 8,
        timeout_s: float = TIMEOUT_S,
    ) -> None:
        super().__init__(name="kym-webhooks", daemon=True)
        self.ctx, self.interval_s = ctx, interval_s
        self.retry_delays_s = tuple(retry_delays_s)
        self.resolver, self.public = resolver, public
        self.stopping = threading.Event()
        self._free = threading.Semaphore(concurrency)
        self._concurrency = concurrency
        self._in_flight: dict[str, int] = {}  # party -> its attempts running now
        self._in_flight_lock = threading.Lock()
        self.timeout_s = timeout_s
        self._client = httpx.Client(  # a new connection each attempt, for its Deadline
            follow_redirects=False,
            timeout=timeout_s,
            trust_env=False,
            limits=httpx.Limits(max_keepalive_connections=0),
        )
        self._last_prune = 0.0
        self._faults = FaultLog(log, "webhook ")

    def run(self) -> None:
        while not self.stopping.wait(self.interval_s):
            try:
                self.tick()
            except Exception as exc:  # noqa: BLE001 - logged; the next round tries again
                self._faults.failed("delivery round", exc)
        self.wait_idle(2)  # attempts still running are daemon threads: an exit cuts them short,
        self._client.close()  # and their leases run out, so they are tried again later

    def tick(self) -> int:
        """One round: fan out new events, start the due attempts; how many were started."""
        skip_locked = not self.ctx.db.is_sqlite
        now = self.ctx.clock()
        self.fan_out(now, skip_locked)
        self._prune_now_and_then(now)
        free = self._free_slots()
        if not free:
            return 0
        lease = now + timedelta(seconds=LEASE_S)
        with self._in_flight_lock:
            running = dict(self._in_flight)
        claims = self.ctx.db.run(
            lambda conn: attempts.claim_due(conn, now, lease, free, skip_locked, running)
        )
        for claim in claims:
            self._free.acquire()
            self._count_in_flight(claim["party_id"], 1)
            name = f"kym-webhook-{claim['task_seq']}"
            threading.Thread(
                target=self._attempt_and_release, args=(claim,), name=name, daemon=True
            ).start()
        return len(claims)

    def fan_out(self, now: datetime, skip_locked: bool) -> int:
        """Fan out every new event, FAN_OUT_CHUNK a transaction, for FAN_OUT_BUDGET_S at most;
        how many. One chunk a round (every 0.5 s) kept up with 1,000 events a second, and a
        gateway paying 2,000 times a second makes 4,000: the backlog grew all the time, and
        the first attempt came later and later than the contract's 5 seconds."""
        deadline, total = time.monotonic() + FAN_OUT_BUDGET_S, 0
        while not self.stopping.is_set():
            done = self.ctx.db.run(
                lambda conn: event_store.fan_out(conn, now, FAN_OUT_CHUNK, skip_locked)
            )
            total += done
            if done < FAN_OUT_CHUNK or time.monotonic() >= deadline:
                break
        return total

    def _free_slots(self) -> int:
        free = 0
        while free < self._concurrency and self._free.acquire(blocking=False):
            free += 1
        for _ in range(free):
            self._free.release()
        return free

    def wait_idle(self, timeout_s: float = 30) -> None:
        """Wait until no attempt is in flight (for tests, which run `tick` themselves)."""
        deadline, taken = time.monotonic() + timeout_s, 0
        while taken < self._concurrency:
            if not self._free.acquire(timeout=max(0.0, deadline - time.monotonic())):
                break
            taken += 1
        for _ in range(taken):
            self._free.release()

    def _attempt_and_release(self, claim: dict[str, Any]) -> None:
        try:
            self.attempt(claim)
        except Exception:  # noqa: BLE001 - the lease runs out and the attempt comes again
            log.exception("could not record a webhook attempt")
        finally:
            self._count_in_flight(claim["party_id"], -1)
            self._free.release()

    def _count_in_flight(self, party_id: str, change: int) -> None:
        with self._in_flight_lock:
            count = self._in_flight.get(party_id, 0) + change
            if count:
                self._in_flight[party_id] = count
            else:
                self._in_flight.pop(party_id, None)

    def attempt(self, claim: dict[str, Any]) -> None:
        """POST one event to one webhook and write down what happened."""
        started = self.ctx.clock()
        status_code, error = self.post(claim["url"], claim["secret"], claim["event"], started)
        delivered = status_code is not None and 200 <= status_code < 300 and error is None
        metrics.webhook_delivery("delivered" if delivered else "failed")
        ended = self.ctx.clock()
        outcome = {
            "status_code": status_code,
            "error": error,
            "at": started,
            "delivered": delivered,
        }
        first_at = claim["first_at"] or started
        last = claim["attempt"] > len(self.retry_delays_s)

        def work(conn: Any) -> None:
            attempts.log_attempt(conn, claim, outcome)
            if delivered or last:
                attempts.finish_task(conn, claim["task_seq"])
            else:
                delay = timedelta(seconds=self.retry_delays_s[claim["attempt"] - 1])
                attempts.retry_task(
                    conn, claim["task_seq"], claim["attempt"], first_at, ended + delay
                )

        self.ctx.db.run(work)
        if last and not delivered:
            log.warning("gave up on event %s for %s", claim["event"]["id"], claim["webhook_id"])

    def post(
        self, url: str, secret: str, event: dict[str, Any], at: datetime
    ) -> tuple[int | None, str | None]:
        """(status code, error) of one POST; the address is checked first, every time."""
        try:
            target = ssrf.check_url(
                url,
                allow_private=self.ctx.settings.webhook_allow_private,
                resolver=self.resolver,
                public=self.public,
            )
        except ssrf.UrlNotAllowed as refused:
            return None, f"not delivered: {refused}"
        body, headers = sign(secret, event, at)
        extensions: dict[str, Any] = {}
        if target.address is not None:
            headers["host"] = target.url.netloc
            if target.url.scheme == "https":
                extensions["sni_hostname"] = target.host
        began, deadline = time.monotonic(), Deadline(self.timeout_s)
        extensions["trace"] = deadline.trace
        try:
            with deadline:
                request = self._client.build_request(
                    "POST",
                    target.connect_url(),
                    content=body.encode(),
                    headers=headers,
                    extensions=extensions,
                )
                response = self._client.send(request, stream=True)
                response.close()
        except (httpx.HTTPError, ValueError) as exc:  # ValueError: a header httpx cannot send
            if deadline.expired:
                return None, f"no answer within {self.timeout_s:g} s"
            return None, f"{type(exc).__name__}: {exc}"[:500]
        if deadline.expired or time.monotonic() - began > self.timeout_s:
            return response.status_code, f"answered after more than {self.timeout_s:g} s"
        if response.is_redirect:
            return response.status_code, "redirects are not followed"
        return response.status_code, None

    def _prune_now_and_then(self, now: datetime) -> None:
        if time.monotonic() - self._last_prune < 600:
            return
        self._last_prune = time.monotonic()
        self.ctx.db.run(lambda conn: event_store.prune(conn, now - KEEP_EVENTS))

    def stop(self) -> None:
        self.stopping.set()
