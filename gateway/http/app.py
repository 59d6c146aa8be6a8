"""The HTTP API (contract sections 2 to 5 and 10), assembled from one router per resource.

Nothing here decides anything: `edge` enforces body limits before routing, `deps` says who is
calling, `errors` turns refusals into the contract's error body, and each router is a thin
layer over the use cases in `gateway.service`, `gateway.wallets`, `gateway.consent.service`,
`gateway.keys` and `gateway.orders`.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import APIRouter, FastAPI

from gateway import console
from gateway.context import Context
from gateway.events.slots import StreamSlots
from gateway.http.edge import Edge
from gateway.http.errors import KEYED_ERRORS, PUBLIC_ERRORS, install_error_handlers
from gateway.http.routes import (
    approvals,
    audit,
    audit_log,
    ca,
    devices,
    disputes,
    events,
    evidence,
    funding,
    health,
    instalments,
    keys,
    mandates,
    merchants,
    metrics,
    parties,
    payees,
    rules,
    wallets,
    webhooks,
)

PUBLIC: list[APIRouter] = [health.router, ca.router]
KEYED: list[APIRouter] = [
    parties.router,
    keys.router,
    devices.router,
    wallets.router,
    merchants.router,
    rules.router,
    mandates.router,
    approvals.router,
    audit.router,
    audit_log.router,
    payees.router,
    evidence.router,
    funding.router,
    instalments.router,
    disputes.router,
    webhooks.router,
    events.router,
    metrics.router,
]


def create_app(ctx: Context, ready: Callable[[], bool] = lambda: True) -> FastAPI:
    """The FastAPI application for this gateway; `ready` says whether MQTT is up."""
    app = FastAPI(
        title="KYM gateway",
        version="1",
        docs_url="/docs",
        redoc_url=None,
        generate_unique_id_function=lambda route: route.name,  # operationId: `create_owner`
    )
    app.state.ctx = ctx
    app.state.ready = ready
    app.state.health_faults = health.faults_log()  # /healthz's own, per app
    app.state.stream_slots = StreamSlots()  # open event streams per party, in this process
    install_error_handlers(app)
    for router in PUBLIC:
        app.include_router(router, responses=PUBLIC_ERRORS)
    for router in KEYED:
        app.include_router(router, responses=KEYED_ERRORS)
    console.mount(app)  # the owner's console at /console (contract section 7)
    app.add_middleware(Edge)
    return app


__all__ = ["create_app"]
