"""The service layer on a real database (SQLite and PostgreSQL), without a broker: orders go
straight to `gateway.orders.decide.decide_messages`, results come back from the outbox
(`tests.support.world`). The context's clock is a `Clock` that tests may move forward."""

from __future__ import annotations

from tests.support.clocked import clock, ctx, world  # noqa: F401 - fixtures
