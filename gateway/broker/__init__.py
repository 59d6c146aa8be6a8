"""The embedded MQTT broker `kym serve` runs when no `mosquitto` is installed.

`codec` encodes and decodes MQTT 3.1.1 packets, `acl` decides who may publish and subscribe
to what, `config` holds the settings, `routing` matches topics to subscribers and
shared groups, `sessions` keeps the sessions and routes messages, and `server` runs them over TLS
with client certificates. See `server` for what the broker does and deliberately does not do.
"""

from gateway.broker.acl import Acl, AclPolicy, Grants
from gateway.broker.config import BrokerConfig
from gateway.broker.server import Broker, build_ssl_context, identity_of

__all__ = [
    "Acl",
    "AclPolicy",
    "Broker",
    "BrokerConfig",
    "Grants",
    "build_ssl_context",
    "identity_of",
]
