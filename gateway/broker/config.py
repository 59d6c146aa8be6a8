"""What the embedded broker is configured with: where it listens, its TLS files, its access
policy and its bounds. Shared by the TLS server (`server`) and the session core (`sessions`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gateway.broker.acl import AclPolicy


@dataclass(frozen=True)
class BrokerConfig:
    """Where the broker listens, its TLS material, its access policy and its bounds."""

    certfile: str | Path
    keyfile: str | Path
    cafile: str | Path
    crlfile: str | Path | None = None
    host: str = "127.0.0.1"
    port: int = 8883
    acl: AclPolicy = field(default_factory=AclPolicy)
    max_packet_size: int = 256 * 1024
    max_queued_messages: int = 1000
    gateway_max_queued_messages: int = 100_000  # a burst of orders waits rather than drops
    max_inflight_messages: int = 100
    max_subscriptions: int = 100
    handshake_timeout_s: float = 10.0
    connect_timeout_s: float = 10.0
    # Orders a second and burst per device beyond which the broker drops orders before they
    # reach the gateway (None: no limit here). `kym serve` sets twice the gateway's own limits.
    device_limits: tuple[float, int] | None = None
