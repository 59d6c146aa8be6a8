"""Fault tests: real `kym serve` processes SIGKILLed at random moments, a real Mosquitto and a
throwaway PostgreSQL cluster restarted under load (CONTRACT.md section 6, "Delivery").

Each test is bounded (a fixed number of faults, a deadline for the results) and stops every
process it started. The figures (kills, orders, decisions, lost) are printed as `FAULTS` lines
and appended to $KYM_FAULT_FIGURES when it is set.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.faults.inprocess import Gateway, serve_gateway
from tests.faults.processes import Mosquitto, Postgres, postgres_tools_available
from tests.support.services import unavailable
from tests.support.stack import BROKERS


@contextmanager
def own_postgres() -> Iterator[Postgres]:
    """A PostgreSQL 15 cluster started for this test (never the machine's), then destroyed."""
    if not postgres_tools_available():
        unavailable("PostgreSQL 15 initdb/pg_ctl and runuser")
    cluster = Postgres()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database URL: SQLite in a temp dir, or a throwaway PostgreSQL cluster of the test's."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'kym.db'}"
        return
    with own_postgres() as cluster:
        yield cluster.url()


@pytest.fixture
def postgres_cluster() -> Iterator[Postgres]:
    with own_postgres() as cluster:
        yield cluster


@pytest.fixture
def mosquitto(mosquitto_binary: str, tmp_path: Path) -> Iterator[Mosquitto]:
    """A Mosquitto configured by `kym mosquitto-config` for the data dir `tmp_path/data`."""
    broker = Mosquitto(mosquitto_binary, tmp_path / "data", tmp_path / "mosquitto")
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@pytest.fixture(params=BROKERS)
def gateway(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Gateway]:
    """The in-process gateway's parts (`tests.faults.inprocess`) on SQLite, on both brokers."""
    if request.param == "mosquitto":
        request.getfixturevalue("mosquitto_binary")
    yield from serve_gateway(tmp_path, f"sqlite:///{tmp_path / 'kym.db'}", request.param)
