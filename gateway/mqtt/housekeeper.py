"""The housekeeper: expires approvals and holds on time, settles disputes and instalments,
signs tree heads, marks what the broker acknowledged (for workers that take no batches) and
publishes again what a crash or a lost connection left in the outbox."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from gateway.audit.service import sign_tree_head_if_due
from gateway.context import Context
from gateway.db_faults import FaultLog
from gateway.disputes.service import settle_due as settle_due_disputes
from gateway.funding.collect import collect_due as collect_due_instalments
from gateway.mqtt.workers import MARK_EVERY_S, REPUBLISH_AFTER, Publisher
from gateway.orders import store as order_store
from gateway.orders.approvals import expire_approvals
from gateway.orders.holds import expire_holds

log = logging.getLogger("kym.pipeline")


class Housekeeper(threading.Thread):
    """Expires approvals and holds on time, marks what the broker acknowledged and publishes
    again what a crash or a lost connection left in the outbox."""

    def __init__(self, ctx: Context, publishers: list[Publisher], interval_s: float = 0.5) -> None:
        super().__init__(name="kym-housekeeper", daemon=True)
        self.ctx, self.publishers, self.interval_s = ctx, publishers, interval_s
        self.stopping = threading.Event()
        self._faults = FaultLog(log, "housekeeping: ")

    def run(self) -> None:
        marker = threading.Thread(target=self._mark_often, name="kym-outbox-marker", daemon=True)
        marker.start()  # not behind the slower chores of `tick`
        while not self.stopping.wait(self.interval_s):
            self.tick()  # logs what fails; the next round tries again
        marker.join(1)

    def _mark_often(self) -> None:
        while not self.stopping.wait(MARK_EVERY_S):
            try:
                self.mark_published()
            except Exception as exc:  # noqa: BLE001 - logged; the next round tries again
                self._faults.failed("marking published results", exc)

    def tick(self) -> None:
        """One round: approvals, holds, disputes, instalments, a tree head when due,
        acknowledged results, then stale outbox entries. Each chore on its own: one that
        keeps failing (a row it cannot handle, say) holds up none of the others."""
        ctx = self.ctx
        chores: list[tuple[str, Callable[[], object]]] = [
            ("expiring approvals", lambda: expire_approvals(ctx)),
            ("expiring holds", lambda: expire_holds(ctx)),
            # silence resolves for the owner; pending refunds paid
            ("settling disputes", lambda: settle_due_disputes(ctx)),
            # instalments on their due dates, overdue ones daily
            ("collecting instalments", lambda: collect_due_instalments(ctx)),
            ("signing a tree head", lambda: sign_tree_head_if_due(ctx)),
            ("marking published results", self.mark_published),
            ("publishing stale results", self.publish_stale),
        ]
        for what, chore in chores:
            try:
                chore()
            except Exception as exc:  # noqa: BLE001 - logged; the next round tries again
                self._faults.failed(what, exc)

    def publish_stale(self) -> None:
        """Publish again what a crash or a lost connection left unpublished in the outbox."""
        publisher = next((p for p in self.publishers if p.client.is_connected), None)
        if publisher is None:
            return  # nobody to publish through; paho re-sends what it holds after reconnecting
        with self.ctx.db.read() as conn:
            stale = order_store.unpublished(conn, self.ctx.clock() - REPUBLISH_AFTER)
        stale = [e for e in stale if not any(p.is_pending(e[0]) for p in self.publishers)]
        if stale:
            log.info("publishing %d results left in the outbox", len(stale))
            publisher(stale)

    def mark_published(self, *, quiet_only: bool = True) -> None:
        """Mark what the broker acknowledged, for the workers that are not taking batches
        (each marks its own in its batch's transaction); `quiet_only=False`: for every one (a
        worker that has stopped)."""
        idle = [p for p in self.publishers if not (quiet_only and p.worker_marks())]
        acked = [i for publisher in idle for i in publisher.settled()]
        if acked:
            self.ctx.db.run(lambda conn: order_store.mark_published(conn, acked))

    def stop(self) -> None:
        self.stopping.set()
