"""/healthz: 503, never 500, while the database or the broker is away, and 200 once back."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from gateway.context import Context
from gateway.db import Database
from gateway.http.app import create_app
from tests.http.tcp_proxy import TcpProxy
from tests.support.gateway import ADMIN


@pytest.fixture
def proxied_postgres(postgres_database: str) -> Iterator[tuple[str, TcpProxy]]:
    """The run's PostgreSQL database, reached through a proxy the test can cut."""
    from tests.support.services import postgres_schema_url

    url = postgres_schema_url(postgres_database)
    db = Database(url)
    db.migrate()
    db.dispose()
    proxy = TcpProxy(("127.0.0.1", 5432))
    yield url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}"), proxy
    proxy.close()


@pytest.mark.postgres
def test_healthz_is_503_while_the_database_is_away_and_200_once_back(
    proxied_postgres: tuple[str, TcpProxy], tmp_path: Path
) -> None:
    from gateway.server import build_context
    from gateway.settings import Settings
    from tests.support.gateway import ADMIN_TOKEN

    url, proxy = proxied_postgres
    settings = Settings(data_dir=tmp_path / "data", database_url=url, admin_token=ADMIN_TOKEN)
    ctx = build_context(settings)
    with TestClient(create_app(ctx)) as api:
        assert api.get("/healthz").json() == {"status": "ok"}
        proxy.down()
        down = api.get("/healthz")
        assert down.status_code == 503
        assert down.json() == {"status": "database_unavailable"}
        owner = {"name": "Ada", "timezone": "UTC"}
        refused = api.post("/v1/owners", json=owner, headers=ADMIN)
        assert refused.status_code == 503
        assert refused.json()["error"]["code"] == "database_unavailable"
        proxy.up()
        assert api.get("/healthz").status_code == 200
        assert api.post("/v1/owners", json=owner, headers=ADMIN).status_code == 201
    ctx.db.dispose()


def test_healthz_is_503_while_the_broker_is_away(sqlite_api: TestClient) -> None:
    ctx: Context = sqlite_api.app.state.ctx  # type: ignore[attr-defined]
    broker_up = False
    with TestClient(create_app(ctx, ready=lambda: broker_up)) as api:
        assert api.get("/healthz").status_code == 503
        assert api.get("/healthz").json() == {"status": "broker_unavailable"}
        broker_up = True
        assert api.get("/healthz").json() == {"status": "ok"}


def test_healthz_is_503_when_the_database_cannot_be_reached_at_all(
    sqlite_api: TestClient, tmp_path: Path
) -> None:
    ctx: Context = sqlite_api.app.state.ctx  # type: ignore[attr-defined]
    gone = replace(ctx, db=Database(f"sqlite:///{tmp_path / 'missing' / 'kym.db'}"))
    with TestClient(create_app(gone)) as api:
        assert api.get("/healthz").status_code == 503
        refused = api.get("/v1/keys", headers={"Authorization": "Bearer kym_x"})
        assert refused.status_code == 503
    gone.db.dispose()


def test_healthz_says_the_database_is_away_once_not_at_every_ask(
    sqlite_api: TestClient, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ctx: Context = sqlite_api.app.state.ctx  # type: ignore[attr-defined]
    gone = replace(ctx, db=Database(f"sqlite:///{tmp_path / 'missing' / 'kym.db'}"))
    with TestClient(create_app(gone)) as api, caplog.at_level(logging.WARNING, "kym.http"):
        for _ in range(20):  # a load balancer's asks
            assert api.get("/healthz").status_code == 503
    said = [r for r in caplog.records if "the database does not answer" in r.getMessage()]
    assert len(said) == 1, [r.getMessage() for r in said]
    assert "unable to open database file" in said[0].getMessage()
    assert "\n" not in said[0].getMessage()  # one line, no statement or traceback
    gone.db.dispose()
