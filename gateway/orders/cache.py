"""A worker's copies of what rarely changes and every batch reads: device certificates,
owners' settings (timezone, frozen), rules and active mandates, owners' instalment policies
(or that they have none), and merchants.

Every change to those tables moves the one `cache_versions` counter in its own transaction
(database triggers, migration 0014), and a batch reads the counter once, first thing in its
transaction (`sync`). When it moved, the copies are dropped, so a change committed before a
batch begins is seen by that batch in every worker and process (contract section 5). What is
loaded after the counter was read is at least as new as the counter, so nothing older than it
is ever kept under it.

Merchants are never updated nor deleted (only `gateway.service.create_party` writes them), so
a merchant once read is kept as it is; should merchants ever change, they need a trigger too.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import Connection

from devices import store as device_store
from devices.registry import DeviceCertificate
from gateway import store
from gateway.consent import store as consent_store
from gateway.consent.mandates import Mandate
from gateway.consent.rules import Rules
from gateway.funding.offers import Policy, policy_from_row
from gateway.funding.policy import policies as policies_table
from wallet.prepared import Prepared, pipelined

V = TypeVar("V")
_VERSION = Prepared({"*": sa.text("SELECT version FROM cache_versions WHERE id = 1")})
# Built once: building a statement costs more than running it.
_POLICIES_IN = sa.select(policies_table).where(
    policies_table.c.owner_id.in_(sa.bindparam("ids", expanding=True))
)


class CacheMoved(Exception):
    """A change was committed since the worker's copies were taken (`StateCache.check_later`)."""


class StateCache:
    """Per worker, not shared between threads; valid while `cache_versions` stays put."""

    def __init__(self) -> None:
        self.version: int | None = None
        self._certificates: dict[str, list[DeviceCertificate]] = {}
        self._owners: dict[str, tuple[str, bool]] = {}
        self._rules: dict[str, Rules | None] = {}
        self._mandates: dict[str, list[Mandate]] = {}
        self._policies: dict[str, Policy | None] = {}  # None: the owner has no policy
        self._merchants: dict[str, dict[str, Any]] = {}

    def sync(self, conn: Connection) -> None:
        """Read the counter (one statement; on PostgreSQL in the round trip that begins the
        transaction) and drop every copy if it moved."""
        with pipelined(conn):
            rows = _VERSION.later(conn, {})
        [(version,)] = rows()
        if version != self.version:
            self._drop(version)

    def check_later(self, conn: Connection) -> Callable[[], None]:
        """Read the counter later in the transaction, after copies were used (on PostgreSQL in
        the round trip of the statements queued with it, inside `pipelined`); the returned
        function raises `CacheMoved`, every copy dropped, if it moved since they were taken.

        What the transaction decided from copies before reading it must then be decided
        again: a change committed before the counter was read may be newer than a copy."""
        rows = _VERSION.later(conn, {})

        def check() -> None:
            [(version,)] = rows()
            if version != self.version:
                self._drop(version)
                raise CacheMoved(f"the cache counter moved to {version}")

        return check

    def _drop(self, version: int) -> None:
        self._certificates, self._owners, self._rules, self._mandates = {}, {}, {}, {}
        self._policies, self._merchants = {}, {}
        self.version = version

    def certificates_of(
        self, conn: Connection, ids: set[str]
    ) -> dict[str, list[DeviceCertificate]]:
        """The certificates of these devices `device_store.certificates_of` gives, oldest first."""
        return _through(
            self._certificates, ids, lambda m: device_store.certificates_of(conn, m), []
        )

    def owner_settings(self, conn: Connection, ids: set[str]) -> dict[str, tuple[str, bool]]:
        """Each owner's timezone and whether they froze their devices' payments."""
        return _through(self._owners, ids, lambda m: store.owner_settings(conn, m), None)

    def rules(self, conn: Connection, ids: set[str]) -> dict[str, Rules | None]:
        """Each device's rules (None: no rules)."""
        return _through(self._rules, ids, lambda m: consent_store.load_rules(conn, m), None)

    def mandates(self, conn: Connection, ids: set[str]) -> dict[str, list[Mandate]]:
        """Each device's active mandates, oldest first (devices without any are left out)."""
        found = _through(self._mandates, ids, lambda m: consent_store.load_mandates(conn, m), [])
        return {k: v for k, v in found.items() if v}

    def policy(self, conn: Connection, owner_id: str, others: Iterable[str] = ()) -> Policy | None:
        """The owner's instalment policy, or None. On a miss, the policies of `others` (the
        batch's other owners, read lazily) are loaded in the same query. An owner without a
        policy is kept too: most have none, and not asking every batch is what this saves."""
        if owner_id not in self._policies:
            missing = ({owner_id} | set(others)) - self._policies.keys()
            loaded = load_policies(conn, missing)
            self._policies.update({owner: loaded.get(owner) for owner in missing})
        return self._policies[owner_id]

    def merchants(self, conn: Connection, ids: set[str]) -> dict[str, dict[str, Any]]:
        """The merchants among these ids (rows by id)."""
        return _through(self._merchants, ids, lambda m: store.merchants_by_id(conn, m), None)


def load_policies(conn: Connection, owner_ids: Iterable[str]) -> dict[str, Policy]:
    """The instalment policies these owners have (owners without one are left out)."""
    rows = conn.execute(_POLICIES_IN, {"ids": sorted(set(owner_ids))}).mappings()
    return {row["owner_id"]: policy_from_row(dict(row)) for row in rows}


def known_merchants(cache: StateCache | None, ids: Iterable[str]) -> set[str]:
    """Which of these ids are merchants the cache holds already."""
    return set() if cache is None else set(ids) & cache._merchants.keys()


def _through(
    kept: dict[str, V],
    ids: Iterable[str],
    load: Callable[[set[str]], dict[str, V]],
    absent: V | None,
) -> dict[str, V]:
    """`kept` for the ids it has; the others loaded in one query and kept (an id the query
    does not return is kept as `absent`, or not at all when `absent` is None)."""
    ids = set(ids)
    missing = ids - kept.keys()
    if missing:
        loaded = load(missing)
        for key in missing:
            if key in loaded:
                kept[key] = loaded[key]
            elif absent is not None:
                kept[key] = absent
    return {key: kept[key] for key in ids if key in kept}
