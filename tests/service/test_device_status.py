"""Device status changes made at the same moment by its owner and its integrator (contract
section 2): each starts from the status the other committed, so a revocation stays final."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sqlalchemy import text

from tests.support.world import World


def test_a_revoke_and_a_resume_at_once_leave_the_device_revoked(world: World) -> None:
    for n in range(4):  # either may go first; before the lock, the later write won
        dev = world.device(f"car{n}", top_up=0)
        assert dev.act("suspend").status_code == 200
        blocker = world.ctx.db.engine.connect()  # holds the device while both requests start
        held = blocker.begin()  # SQLite: BEGIN IMMEDIATE, the write lock
        lock = "" if world.ctx.db.is_sqlite else " FOR UPDATE"
        blocker.execute(text(f"SELECT id FROM devices WHERE id = :d{lock}"), {"d": dev.id})
        started = threading.Barrier(3)

        def at_once(call: Any, started: threading.Barrier = started) -> Any:
            started.wait()
            return call()

        with ThreadPoolExecutor(2) as pool:
            revoke = pool.submit(
                at_once,
                lambda d=dev: world.api.post(f"/v1/devices/{d.id}/revoke", headers=d.integrator),
            )
            resume = pool.submit(at_once, lambda d=dev: d.act("resume"))
            started.wait()
            time.sleep(0.5)  # both have read the device, or wait to
            held.commit()
            blocker.close()
            revoked, resumed = revoke.result(timeout=30), resume.result(timeout=30)
        assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
        assert resumed.status_code in (200, 409), resumed.text  # 409: it came second
        now = world.api.get(f"/v1/devices/{dev.id}", headers=dev.owner).json()
        assert now["status"] == "revoked", (n, resumed.status_code)
