"""Fixtures for the device PKI: the clock of the run and the gateway's authorities, in memory."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tests.support.pki import Authorities, make_authorities


@pytest.fixture(scope="session")
def now() -> datetime:
    """The current time, whole seconds (openssl checks validity against the real clock)."""
    return datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="session")
def authorities(now: datetime) -> Authorities:
    """A device root, its issuing CA and a service root, shared by the session."""
    return make_authorities(now)
