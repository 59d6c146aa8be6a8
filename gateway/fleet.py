"""The devices a party sees, page by page (contract section 7): an owner's devices, or those an
integrator registered; and one device's audit trail, newest first.

Devices sort by (created_at, id) and audit entries by their log index, neither of which a later
item can take, so a cursor keeps its place while devices register and entries are appended.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from devices import store as device_store
from devices.registry import Device, DeviceCertificate
from gateway import paging
from gateway.audit import store as audit_store
from gateway.context import Context
from gateway.errors import Forbidden
from gateway.paging import Page
from gateway.parties import Party
from gateway.service import owned_device_id

PARTY_COLUMN = {"owner": "owner_id", "integrator": "integrator_id"}


def devices_page(
    ctx: Context, party: Party, status: str | None, limit: int, cursor: str | None
) -> Page[tuple[Device, DeviceCertificate]]:
    """The owner's devices or the integrator's, newest first, each with its newest certificate."""
    if party.kind not in PARTY_COLUMN:
        raise Forbidden(f"{party.described} has no devices")
    start = paging.after("devices", cursor, paging.TIME_THEN_ID)
    after = None if start is None else (_time(start[0]), str(start[1]))
    with ctx.db.read() as conn:
        rows = device_store.list_devices(
            conn, PARTY_COLUMN[party.kind], party.id, status, paging.check_limit(limit) + 1, after
        )
        page, next_cursor = paging.page_of(rows, limit, "devices", lambda d: (d.created_at, d.id))
        certificates = device_store.newest_certificates(conn, [d.id for d in page])
    return Page([(device, certificates[device.id]) for device in page], next_cursor)


def audit_page(
    ctx: Context, owner: Party, device_id: str, limit: int, cursor: str | None
) -> Page[dict[str, Any]]:
    """The audit entries about one of the owner's devices, newest first."""
    start = paging.after("audit", cursor, paging.SEQUENCE)
    before_index = None if start is None else _index(start[0])
    with ctx.db.read() as conn:
        owned_device_id(conn, owner, device_id)
        rows = audit_store.newest_entries(
            conn, device_id, paging.check_limit(limit) + 1, before_index
        )
    page, next_cursor = paging.page_of(rows, limit, "audit", lambda entry: (entry.index,))
    items = [
        {
            "seq": e.seq,
            "at": e.at.isoformat(),
            "actor": e.actor,
            "action": e.action,
            "data": json.loads(e.data),
            "hash": e.hash,
        }
        for e in page
    ]
    return Page(items, next_cursor)


def _index(part: paging.KeyPart) -> int:
    assert isinstance(part, int), "a SEQUENCE cursor holds an index"
    return part


def _time(part: paging.KeyPart) -> datetime:
    assert isinstance(part, datetime), "a TIME_THEN_ID cursor starts with a time"
    return part
