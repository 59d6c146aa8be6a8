"""A dispute as the API shows it."""

from __future__ import annotations

from datetime import datetime
from typing import Any


def dispute_public(row: dict[str, Any]) -> dict[str, Any]:
    """`{"id", "payment_id", "status", "respond_by", ...}` of a dispute row."""
    response = None
    if row.get("response_decision"):
        response = {"decision": row["response_decision"], "message": row["response_message"]}
    resolution = None
    if row["status"].startswith("resolved_"):
        outcome = "owner" if row["status"] == "resolved_for_owner" else "payee"
        resolution = {
            "outcome": outcome,
            "message": row.get("resolution_message"),
            "by": row.get("resolved_by"),
        }
    return {
        "id": row["id"],
        "payment_id": row["payment_id"],
        "status": row["status"],
        "reason": row["reason"],
        "message": row["message"],
        "amount": row["amount_minor"],
        "currency": row["currency"],
        "payer_device_id": row["payer_id"],
        "payee": row["payee_id"],
        "respond_by": _iso(row["respond_by"]),
        "created_at": _iso(row["created_at"]),
        "updated_at": _iso(row["updated_at"]),
        "response": response,
        "resolution": resolution,
        "refund_pending": bool(row.get("refund_pending")),
        "refunded_amount": int(row.get("refunded_minor") or 0),
    }


def _iso(value: datetime) -> str:
    return value.isoformat()
