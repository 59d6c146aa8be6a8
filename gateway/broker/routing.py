"""Which sessions a message goes to: messages as routed, subscriptions indexed for matching,
and shared groups served in turn. Pure data structures; `sessions` drives them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TypeVar

from gateway.broker import codec
from gateway.broker.acl import levels_match, parse_subscription

T = TypeVar("T")


class Message:
    """One published message, shared by every delivery of it."""

    __slots__ = ("topic", "topic_utf8", "payload", "qos", "_qos0_packet")

    def __init__(self, topic: str, payload: bytes, qos: int) -> None:
        self.topic, self.payload, self.qos = topic, payload, qos
        self.topic_utf8 = topic.encode()
        self._qos0_packet: bytes | None = None

    def qos0_packet(self) -> bytes:
        """The QoS 0 PUBLISH of this message, encoded once for all its receivers."""
        if self._qos0_packet is None:
            self._qos0_packet = codec.encode_publish(self.topic_utf8, self.payload, 0, 0, False)
        return self._qos0_packet


class Delivery:
    """A QoS 1 message on its way to one session; `share` names the shared group it came by."""

    __slots__ = ("message", "share")

    def __init__(self, message: Message, share: tuple[str, str] | None) -> None:
        self.message, self.share = message, share


class SharedGroup:
    """The members of one `$share/<group>/<filter>`, served in turn."""

    __slots__ = ("key", "levels", "members", "order", "turn")

    def __init__(self, key: tuple[str, str]) -> None:
        self.key, self.levels = key, key[1].split("/")
        self.members: dict[str, int] = {}  # identity -> granted QoS
        self.order: list[str] = []  # the members in joining order, for round robin
        self.turn = 0

    def join(self, identity: str, qos: int) -> None:
        """Add a member, or change its QoS."""
        if identity not in self.members:
            self.order.append(identity)
        self.members[identity] = qos

    def leave(self, identity: str) -> None:
        """Remove a member if it is one."""
        if self.members.pop(identity, None) is not None:
            self.order.remove(identity)


class Router:
    """Subscriptions indexed for matching: exact topics by dict, wildcard filters by scan."""

    def __init__(self) -> None:
        self._exact: dict[str, dict[str, int]] = {}
        self._wild: dict[str, tuple[list[str], dict[str, int]]] = {}
        self.groups: dict[tuple[str, str], SharedGroup] = {}

    def add(self, identity: str, subscription: str, qos: int) -> None:
        """Subscribe `identity` (the subscription was validated by the ACL)."""
        parsed = parse_subscription(subscription)
        assert parsed is not None
        group, topic_filter = parsed
        if group is not None:
            key = (group, topic_filter)
            self.groups.setdefault(key, SharedGroup(key)).join(identity, qos)
        elif "+" in topic_filter or "#" in topic_filter:
            self._wild.setdefault(topic_filter, (topic_filter.split("/"), {}))[1][identity] = qos
        else:
            self._exact.setdefault(topic_filter, {})[identity] = qos

    def remove(self, identity: str, subscription: str) -> None:
        """Unsubscribe `identity`."""
        parsed = parse_subscription(subscription)
        assert parsed is not None
        group, topic_filter = parsed
        if group is not None:
            shared = self.groups.get((group, topic_filter))
            if shared is not None:
                shared.leave(identity)
                if not shared.members:
                    del self.groups[shared.key]
        elif topic_filter in self._wild:
            _discard(self._wild, topic_filter, self._wild[topic_filter][1], identity)
        elif topic_filter in self._exact:
            _discard(self._exact, topic_filter, self._exact[topic_filter], identity)

    def subscribers(self, topic: str) -> Mapping[str, int]:
        """Each identity with a plain subscription matching `topic`, with its highest QoS."""
        exact = self._exact.get(topic)
        if not self._wild:
            return exact or _NO_SUBSCRIBERS  # read-only: the caller must not change it
        found = dict(exact) if exact else {}
        levels = topic.split("/")
        for filter_levels, subs in self._wild.values():
            if levels_match(filter_levels, levels):
                for identity, qos in subs.items():
                    if found.get(identity, -1) < qos:
                        found[identity] = qos
        return found

    def shared_groups(self, topic: str) -> list[SharedGroup]:
        """The shared groups whose filter matches `topic`."""
        if not self.groups:
            return _NO_GROUPS
        levels = topic.split("/")
        return [g for g in self.groups.values() if levels_match(g.levels, levels)]


_NO_SUBSCRIBERS: Mapping[str, int] = {}
_NO_GROUPS: list[SharedGroup] = []


def _discard(index: dict[str, T], key: str, subs: dict[str, int], identity: str) -> None:
    subs.pop(identity, None)
    if not subs:
        del index[key]
