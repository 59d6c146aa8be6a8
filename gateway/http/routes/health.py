"""Readiness: the API, the database, the broker connection and the order subscription."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError

from gateway.db_faults import FaultLog
from gateway.http.deps import Ctx
from gateway.http.public import Health

log = logging.getLogger("kym.http")
router = APIRouter(tags=["health"])


def faults_log() -> FaultLog:
    """A load balancer asks every few seconds: while the database is away, a line every
    FAULT_LOG_EVERY_S says so, not one an ask."""
    return FaultLog(log, "healthz: ")


UNREADY: dict[int | str, dict[str, Any]] = {
    503: {"model": Health, "description": "Not ready: `status` says what is missing"}
}


@router.get("/healthz", response_model=Health, responses=UNREADY)
def healthz(ctx: Ctx, request: Request) -> JSONResponse:
    """200 when the database answers and writes, and the order subscription is held, else 503."""
    faults: FaultLog = request.app.state.health_faults
    try:
        with ctx.db.read() as conn:
            conn.exec_driver_sql("SELECT 1")
    except SQLAlchemyError as exc:
        faults.seldom("the database does not answer", exc)
        return JSONResponse({"status": "database_unavailable"}, status_code=503)
    if (fault := ctx.db.write_fault()) is not None:  # it answers, but writes fail (disk full)
        faults.seldom("the database answers but its writes fail", fault)
        return JSONResponse({"status": "database_unavailable"}, status_code=503)
    ready: Callable[[], bool] = request.app.state.ready
    if not ready():
        return JSONResponse({"status": "broker_unavailable"}, status_code=503)
    return JSONResponse({"status": "ok"})
