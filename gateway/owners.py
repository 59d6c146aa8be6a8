"""The owner's own account (contract section 7): who they are, and the freeze switch.

While an owner is frozen every pay and hold of their devices is declined with `owner_frozen`
(checked right after the device, `gateway.orders.payments`) and approving is 409 with the
approval left pending (`gateway.orders.approvals`); captures, voids and refunds go on. The flag
is read inside each decision's transaction, so a freeze holds for every order received after
the call returns, in every worker.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from gateway import store
from gateway.audit import store as audit_store
from gateway.context import Context
from gateway.errors import NotFound
from gateway.parties import Party


def owner_profile(ctx: Context, owner: Party) -> dict[str, Any]:
    """The owner as `GET /v1/owners/me` shows them."""
    with ctx.db.read() as conn:
        return _profile(conn, owner)


def set_frozen(ctx: Context, owner: Party, frozen: bool) -> dict[str, bool]:
    """Freeze (or unfreeze) every pay and hold of the owner's devices; audited when it changes."""
    now = ctx.clock()

    def work(conn: Connection) -> dict[str, bool]:
        if _profile(conn, owner)["frozen"] != frozen:
            store.set_frozen(conn, owner.id, frozen)
            action = "owner.frozen" if frozen else "owner.unfrozen"
            audit_store.append(conn, now, [(owner.actor, action, None, {"id": owner.id})])
        return {"frozen": frozen}

    return ctx.db.run(work)


def _profile(conn: Connection, owner: Party) -> dict[str, Any]:
    row = store.get_party_row(conn, "owner", owner.id)
    if row is None:
        raise NotFound("no such owner")
    return {
        "id": row["id"],
        "name": row["name"],
        "timezone": row["timezone"],
        "frozen": bool(row["frozen"]),
    }
