"""What every use case is handed: settings, database, keys, clock, broker and publisher.

`kym serve` builds one `Context` after the broker and the MQTT publisher exist, and never
changes it; tests build theirs with another clock or without a broker.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from joserfc.jwk import ECKey, OKPKey

from devices import keystore, wire
from gateway.db import Database
from gateway.events import metrics
from gateway.settings import Settings

OutboxEntry = tuple[int, str, str]  # (outbox id, topic, signed JWS), committed, to publish


class BrokerControl(Protocol):
    """What the gateway may ask of the broker it runs (none for an external broker)."""

    def reload_crl(self) -> None: ...

    def kick(self, identity: str) -> object: ...

    def allow_device(self, device_id: str) -> None: ...  # before its registration answers

    def forget_device(self, device_id: str) -> None: ...  # revoked: also ends its session


def utcnow() -> datetime:
    """The wall clock, in UTC."""
    return datetime.now(UTC)


@dataclass(frozen=True)
class Context:
    """Everything a use case needs, built once at the entry point."""

    settings: Settings
    db: Database
    pki: keystore.Pki
    clock: Callable[[], datetime] = utcnow
    broker: BrokerControl | None = None
    publisher: Callable[[list[OutboxEntry]], None] | None = None
    signer_jose: ECKey | OKPKey = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # the result-signing key in JOSE form, imported once, not per result
        object.__setattr__(self, "signer_jose", wire.jose_key(self.pki.signer.private_key))

    def publish(self, entries: list[OutboxEntry]) -> None:
        """Count the decisions among committed outbox entries (owners' approvals and expiries
        decide orders outside the MQTT worker), then hand them to the MQTT publisher (the
        housekeeper retries)."""
        metrics.observe_decisions([], entries)
        if entries and self.publisher is not None:
            self.publisher(entries)
