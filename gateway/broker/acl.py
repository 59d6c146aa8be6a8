"""Who may publish and subscribe to what: topic matching and the broker's access rules, pure.

The default `AclPolicy` mirrors the Mosquitto ACL that `kym mosquitto-config` writes: a device
(identity = certificate CN, `%u` in a pattern) publishes only to `kym/v1/devices/%u/orders` and
reads only `kym/v1/devices/%u/results`; a gateway identity (a configured name, or one starting
with the configured prefix) reads every device's orders and writes every device's results.

Grants never widen. A subscription filter is granted only if *every* topic it can match is
readable (`filter_covers`), so a device asking for `#`, `+/...` or `kym/v1/devices/+/results`
is refused rather than filtered later. A shared subscription `$share/<group>/<filter>` is
for gateways only (a device in the gateways' group would take a share of the orders) and is
judged by its filter. Identities that are not plain ids (`[A-Za-z0-9._-]{1,64}`) get nothing,
so a CN like `+` or `a/b` can never turn a `%u` pattern into a wildcard. `$`-topics are not
matched by a `+` or `#` in the first level.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from devices.contract import orders_topic, results_topic

SHARE_PREFIX = "$share/"
_IDENTITY = re.compile(r"[A-Za-z0-9._-]{1,64}")


@dataclass(frozen=True)
class Grants:
    """Topic filters one kind of client may read and write; `%u` stands for its identity."""

    read: tuple[str, ...] = ()
    write: tuple[str, ...] = ()


@dataclass(frozen=True)
class AclPolicy:
    """Which identities are gateways, and what devices and gateways may do."""

    device: Grants = Grants(read=(results_topic("%u"),), write=(orders_topic("%u"),))
    gateway: Grants = Grants(read=(orders_topic("+"),), write=(results_topic("+"),))
    gateway_identities: frozenset[str] = field(default_factory=frozenset)
    gateway_prefix: str | None = "kym-gateway-"

    def is_gateway(self, identity: str) -> bool:
        """True if `identity` acts as a gateway worker."""
        if identity in self.gateway_identities:
            return True
        prefix = self.gateway_prefix
        if not prefix or not identity.startswith(prefix):
            return False
        number = identity[len(prefix) :]  # digits only, as kym_access.c (Mosquitto) has it
        return number.isascii() and number.isdigit()


def is_valid_identity(identity: str) -> bool:
    """True for a plain id that is safe to put into a topic (`[A-Za-z0-9._-]{1,64}`)."""
    return _IDENTITY.fullmatch(identity) is not None


def is_valid_topic_name(topic: str) -> bool:
    """True if `topic` may name a published message."""
    return bool(topic) and not any(c in topic for c in "+#\x00")


def is_valid_filter(topic_filter: str) -> bool:
    """True if `topic_filter` is a well-formed MQTT 3.1.1 topic filter."""
    if not topic_filter or "\x00" in topic_filter:
        return False
    levels = topic_filter.split("/")
    for i, level in enumerate(levels):
        if "#" in level and (level != "#" or i != len(levels) - 1):
            return False
        if "+" in level and level != "+":
            return False
    return True


def parse_subscription(subscription: str) -> tuple[str | None, str] | None:
    """Split `$share/<group>/<filter>` into (group, filter), a plain filter into (None, it)."""
    if not subscription.startswith(SHARE_PREFIX):
        return (None, subscription) if is_valid_filter(subscription) else None
    group, sep, topic_filter = subscription[len(SHARE_PREFIX) :].partition("/")
    if not sep or not group or any(c in group for c in "+#"):
        return None
    return (group, topic_filter) if is_valid_filter(topic_filter) else None


def levels_match(filter_levels: list[str], topic_levels: list[str]) -> bool:
    """True if a filter (split on '/') matches a topic name (split on '/')."""
    if topic_levels[0][:1] == "$" and filter_levels[0] in ("+", "#"):
        return False
    for i, level in enumerate(filter_levels):
        if level == "#":
            return True
        if i >= len(topic_levels) or (level != "+" and level != topic_levels[i]):
            return False
    return len(filter_levels) == len(topic_levels)


def topic_matches(topic_filter: str, topic: str) -> bool:
    """True if `topic_filter` matches the topic name `topic`."""
    if "+" not in topic_filter and "#" not in topic_filter:
        return topic_filter == topic
    return levels_match(topic_filter.split("/"), topic.split("/"))


def filter_covers(grant: str, topic_filter: str) -> bool:
    """True if every topic that `topic_filter` matches is also matched by `grant`."""
    grant_levels, levels = grant.split("/"), topic_filter.split("/")
    if grant_levels[0] in ("+", "#") and levels[0][:1] == "$":
        return False
    for i, granted in enumerate(grant_levels):
        if granted == "#":
            return True
        if i >= len(levels):
            return False
        if levels[i] == "#":  # a topic has at least one level, so `+/#` still covers `#`
            return i == 0 and grant_levels == ["+", "#"]
        if granted != "+" and levels[i] != granted:
            return False
    return len(grant_levels) == len(levels)


@dataclass(frozen=True, slots=True)
class _Resolved:
    """One identity's grants, split for quick checks: exact topics, and wildcard filters."""

    read_exact: frozenset[str]
    read_wild: tuple[list[str], ...]
    read_filters: tuple[str, ...]
    write_exact: frozenset[str]
    write_wild: tuple[list[str], ...]


_NOTHING = _Resolved(frozenset(), (), (), frozenset(), ())


def resolve(policy: AclPolicy, identity: str) -> _Resolved:
    """The grants that `policy` gives `identity`, with `%u` replaced."""
    if not is_valid_identity(identity):
        return _NOTHING
    grants = policy.gateway if policy.is_gateway(identity) else policy.device
    read = tuple(p.replace("%u", identity) for p in grants.read)
    write = tuple(p.replace("%u", identity) for p in grants.write)
    assert all(is_valid_filter(f) for f in read + write), "policy pattern is not a topic filter"
    return _Resolved(
        frozenset(f for f in read if not _is_wild(f)),
        tuple(f.split("/") for f in read if _is_wild(f)),
        read,
        frozenset(f for f in write if not _is_wild(f)),
        tuple(f.split("/") for f in write if _is_wild(f)),
    )


def _is_wild(topic_filter: str) -> bool:
    return "+" in topic_filter or "#" in topic_filter


class Acl:
    """Answers access questions for a policy, caching each identity's resolved grants."""

    def __init__(self, policy: AclPolicy | None = None, cache_size: int = 65_536) -> None:
        self.policy = policy or AclPolicy()
        self._cache: dict[str, _Resolved] = {}
        self._cache_size = cache_size

    def _grants(self, identity: str) -> _Resolved:
        found = self._cache.get(identity)
        if found is None:
            if len(self._cache) >= self._cache_size:
                self._cache.clear()
            found = self._cache[identity] = resolve(self.policy, identity)
        return found

    def may_publish(self, identity: str, topic: str) -> bool:
        """True if `identity` may publish to the topic name `topic`."""
        grants = self._grants(identity)
        if topic in grants.write_exact:
            return True
        if not grants.write_wild or not is_valid_topic_name(topic):
            return False
        levels = topic.split("/")
        return any(levels_match(w, levels) for w in grants.write_wild)

    def may_receive(self, identity: str, topic: str) -> bool:
        """True if a message on `topic` may be delivered to `identity`."""
        grants = self._grants(identity)
        if topic in grants.read_exact:
            return True
        if not grants.read_wild:
            return False
        levels = topic.split("/")
        return any(levels_match(w, levels) for w in grants.read_wild)

    def may_subscribe(self, identity: str, subscription: str) -> bool:
        """True if every topic `subscription` (plain or `$share/...`) can match is readable."""
        parsed = parse_subscription(subscription)
        if parsed is None or (parsed[0] is not None and not self.policy.is_gateway(identity)):
            return False  # a shared subscription is how gateways split the orders: theirs only
        topic_filter = parsed[1]
        grants = self._grants(identity)
        if topic_filter in grants.read_exact:
            return True
        return any(filter_covers(g, topic_filter) for g in grants.read_filters)
