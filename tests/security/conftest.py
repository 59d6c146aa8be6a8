"""A seeded gateway for the security suite: real SQLite, real ids, a key for every kind of party.

`seed(tmp)` builds one: owner A with an approved, funded device (rules, a mandate, a pay, an open
hold and a pending approval, all to a merchant), another owner B with a device of their own, the
integrator that registered A's device, and the merchant. `Seeded.headers[party]` gives the
`Authorization` header of each kind of party the contract knows, plus no key and a wrong key.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.seeded import (
    Seeded,
    seeded_gateway,
)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seeded]:
    """One seeded gateway shared by a module's tests (for calls that must change nothing)."""
    with seeded_gateway(tmp_path_factory.mktemp("seeded")) as gateway:
        yield gateway
