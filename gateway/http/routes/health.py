"""Readiness: the API, the database, the broker connection and the order subscription."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from gateway.http.deps import Ctx
from gateway.http.public import Health

log = logging.getLogger("kym.http")
router = APIRouter(tags=["health"])
UNREADY: dict[int | str, dict[str, Any]] = {
    503: {"model": Health, "description": "Not ready: `status` says what is missing"}
}


@router.get("/healthz", response_model=Health, responses=UNREADY)
def healthz(ctx: Ctx, request: Request) -> JSONResponse:
    """200 when the database answers and writes, and the order subscription is held, else 503."""
    try:
        with ctx.db.read() as conn:
            conn.exec_driver_sql("SELECT 1")
    except SQLAlchemyError as exc:
        log.warning("healthz: the database does not answer: %s", exc)
        return JSONResponse({"status": "database_unavailable"}, status_code=503)
    if (fault := ctx.db.write_fault()) is not None:  # it answers, but writes fail (disk full)
        log.warning("healthz: the database answers but its writes fail: %s", fault)
        return JSONResponse({"status": "database_unavailable"}, status_code=503)
    ready: Callable[[], bool] = request.app.state.ready
    if not ready():
        return JSONResponse({"status": "broker_unavailable"}, status_code=503)
    return JSONResponse({"status": "ok"})
