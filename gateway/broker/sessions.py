"""The broker's MQTT state machine without I/O: connecting, sessions, subscribing and routing.

The per-client state it keeps is in `state`, topic matching and shared groups in `routing`, its
settings in `config`. `BrokerCore` never awaits and never touches a socket: `server.Broker`
feeds it packets on its event loop, and it answers through each `Connection`'s transport, so a
test can drive it with a recording transport. What the broker guarantees is described in
`server`."""

from __future__ import annotations

import logging
import time
from collections import deque

from devices.contract import device_of_orders_topic
from gateway.broker import codec
from gateway.broker.acl import Acl
from gateway.broker.config import BrokerConfig
from gateway.broker.plugin import disconnect_after
from gateway.broker.routing import Delivery, Message, Router, SharedGroup
from gateway.broker.state import Connection, Session
from gateway.orders.ratelimit import RateLimiter, Verdict

__all__ = ["BrokerCore", "Connection", "Session"]

log = logging.getLogger("kym.broker")


OVER_TRACKED = 100_000  # devices whose dropped orders (or denied publishes) are counted at once
DENIED_LOG_EVERY_S = 1.0
_READY, _ONLINE, _ANY = 0, 1, 2  # how available a shared-group member must be to be chosen


class BrokerCore:
    """Sessions, routing and the MQTT state machine; runs on the broker's loop and never awaits.

    Every method runs to completion on the loop thread, so no two packets interleave.
    """

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.acl = Acl(config.acl)
        self.router = Router()
        self.sessions: dict[str, Session] = {}
        self.live: dict[str, Connection] = {}
        self.stopping = False
        limits = config.device_limits
        self.limiter = RateLimiter(*limits) if limits else None
        self.dropped = 0  # orders dropped by the rate limit
        # Devices' dropped orders less the rate since: beyond `disconnect_after(burst)` the
        # device is disconnected (as kym_ratelimit does), and its flood read no further.
        self._over: dict[str, tuple[float, float]] = {}  # device id -> (count, at)
        self._flooding: set[str] = set()
        self._denied: dict[str, tuple[float | None, int]] = {}  # sender -> (logged at, since)

    # --- connecting and leaving -------------------------------------------------------------

    def on_connect(self, conn: Connection, connect: codec.Connect) -> bool:
        """Accept or refuse a CONNECT; returns True if the connection goes on."""
        identity, will = conn.identity, connect.will
        if identity is None or (will and not self.acl.may_publish(identity, will.topic)):
            log.warning("refused CONNECT from %s: not authorized", identity or "<no identity>")
            conn.send(codec.encode_connack(False, codec.CONNACK_NOT_AUTHORIZED))
            return False
        previous = self.live.get(identity)
        if previous is not None:
            log.info("%s connected again: closing its previous connection", identity)
            self.detach(previous, publish_will=False)
            previous.transport.abort()
        session, present = self._open_session(identity, connect.clean_session)
        conn.session, conn.keepalive_s, conn.will = session, connect.keepalive_s, will
        session.connection = conn
        self.live[identity] = conn
        conn.send(codec.encode_connack(present, codec.CONNACK_ACCEPTED))
        log.info(
            "%s connected (clean_session=%s, session_present=%s)",
            identity,
            connect.clean_session,
            present,
        )
        if present:
            self._resume(session, conn)
        return True

    def _open_session(self, identity: str, clean: bool) -> tuple[Session, bool]:
        existing = self.sessions.get(identity)
        if existing is not None and not clean and not existing.clean:
            return existing, True
        if existing is not None:
            self._drop_session(existing)
        config = self.config
        gateway = config.acl.is_gateway(identity)
        limit = config.gateway_max_queued_messages if gateway else config.max_queued_messages
        session = Session(identity, clean, limit)
        self.sessions[identity] = session
        return session, False

    def _resume(self, session: Session, conn: Connection) -> None:
        for packet_id, delivery in session.inflight.items():
            message = delivery.message
            conn.send(codec.encode_publish(message.topic_utf8, message.payload, 1, packet_id, True))
        self._pump(session)

    def detach(self, conn: Connection, publish_will: bool) -> None:
        """Part a connection from its session (once): end or keep the session, send the will."""
        if conn.ended:
            return
        conn.ended = True
        session = conn.session
        if session is None:
            return
        session.connection = None
        if self.live.get(session.identity) is conn:
            del self.live[session.identity]
        if session.clean:
            self._drop_session(session)
        else:
            self._hand_over_shared(session, online_only=True)
        log.info("%s disconnected", session.identity)
        will = conn.will
        if publish_will and will is not None and not self.stopping:
            log.info("publishing the will of %s to %s", session.identity, will.topic)
            self.publish(session.identity, will.topic, will.payload, min(will.qos, 1))

    def _drop_session(self, session: Session) -> None:
        if self.sessions.get(session.identity) is session:
            del self.sessions[session.identity]
        for subscription in session.subscriptions:
            self.router.remove(session.identity, subscription)
        session.subscriptions.clear()
        self._hand_over_shared(session, online_only=False)
        lost = len(session.inflight) + len(session.queue)
        if lost:
            log.warning(
                "%s's session ended with %d unacknowledged QoS 1 messages: dropped",
                session.identity,
                lost,
            )
        session.inflight.clear()
        session.queue.clear()

    def kick(self, identity: str) -> bool:
        """End `identity`'s live connection now and forget its session; True if there was one."""
        conn, session = self.live.get(identity), self.sessions.get(identity)
        if conn is not None:
            self.detach(conn, publish_will=False)
            conn.transport.abort()
        if session is not None:
            self._drop_session(session)
        if conn is None and session is None:
            return False
        log.warning("kicked %s", identity)
        return True

    def reap(self, now: float) -> None:
        """Close every connection silent for more than 1.5 times its keepalive."""
        for conn in list(self.live.values()):
            if conn.keepalive_s and now - conn.last_seen > 1.5 * conn.keepalive_s:
                log.info("%s missed its keepalive: closing", conn.identity)
                conn.transport.abort()  # the read loop then ends, and the will goes out

    # --- packets ------------------------------------------------------------------------------

    def on_packet(self, conn: Connection, packet: codec.Packet) -> bool:
        """Handle a packet of an accepted connection; returns False to close it."""
        session = conn.session
        assert session is not None
        if isinstance(packet, codec.Publish):
            return self._on_publish(conn, session, packet)
        if isinstance(packet, codec.Puback):
            if session.inflight.pop(packet.packet_id, None) is not None:
                self._pump(session)
        elif isinstance(packet, codec.Subscribe):
            conn.send(codec.encode_suback(packet.packet_id, self._subscribe(session, packet)))
        elif isinstance(packet, codec.Unsubscribe):
            for subscription in packet.filters:
                if session.subscriptions.pop(subscription, None) is not None:
                    self.router.remove(session.identity, subscription)
            conn.send(codec.encode_unsuback(packet.packet_id))
        elif isinstance(packet, codec.PingReq):
            conn.send(codec.PINGRESP_PACKET)
        elif isinstance(packet, codec.Disconnect):
            conn.will = None
            return False
        else:
            log.warning("%s sent a second CONNECT: closing", session.identity)
            return False
        return True

    def _on_publish(self, conn: Connection, session: Session, packet: codec.Publish) -> bool:
        if packet.qos == 2:
            log.warning(
                "%s published with QoS 2, which this broker does not support: closing",
                session.identity,
            )
            return False
        self.publish(session.identity, packet.topic, packet.payload, packet.qos)
        if session.identity in self._flooding:
            self._flooding.discard(session.identity)
            log.warning("disconnecting %s: too many orders beyond its rate limit", session.identity)
            return False
        if packet.qos == 1:
            conn.send(codec.encode_puback(packet.packet_id))  # even when dropped, as Mosquitto
        return True

    def _within_rate(self, topic: str) -> bool:
        """False for an order beyond its device's broker limit (`BrokerConfig.device_limits`,
        looser than the gateway's), which is acknowledged and dropped here, before it queues for
        the gateway ahead of other devices' orders; every other message is within."""
        device_id = device_of_orders_topic(topic) if self.limiter is not None else None
        if device_id is None or self.limiter is None:
            return True
        if self.limiter.take(device_id, time.monotonic()) is Verdict.ADMIT:
            return True
        self.dropped += 1
        if self.dropped % 10_000 == 1:
            log.info("dropping orders of %s beyond the broker's rate limit", device_id)
        self._count_over(device_id, time.monotonic())
        return False

    def _note_denied(self, sender: str, topic: str) -> None:
        """Log a publish the access rules denied: once a second per sender at most, with how
        many more there were, so that a device publishing where it may not cannot flood the log."""
        now_s = time.monotonic()
        logged_s, more = self._denied.get(sender, (None, 0))
        if logged_s is not None and now_s - logged_s < DENIED_LOG_EVERY_S:
            self._denied[sender] = (logged_s, more + 1)
            return
        if len(self._denied) >= OVER_TRACKED:
            self._denied.clear()
        self._denied[sender] = (now_s, 0)
        extra = f" ({more} more since the last of these)" if more else ""
        log.info("dropped a message from %s to %s: not authorized%s", sender, topic, extra)

    def _count_over(self, device_id: str, now_s: float) -> None:
        """One more order of `device_id` dropped: past `disconnect_after` (less the rate since
        the last), the device is to be disconnected."""
        assert self.limiter is not None
        count, at = self._over.get(device_id, (0.0, now_s))
        count = max(0.0, count - (now_s - at) * self.limiter.rate_per_s) + 1
        if count > disconnect_after(self.limiter.burst):
            self._flooding.add(device_id)
            count = 0.0
        if len(self._over) > OVER_TRACKED and device_id not in self._over:
            self._over.clear()  # a bound on memory; those devices start again from nothing
        self._over[device_id] = (count, now_s)

    def _subscribe(self, session: Session, packet: codec.Subscribe) -> list[int]:
        codes = []
        for subscription, qos in packet.requests:
            full = (
                subscription not in session.subscriptions
                and len(session.subscriptions) >= self.config.max_subscriptions
            )
            if full or not self.acl.may_subscribe(session.identity, subscription):
                log.info("refused %s a subscription to %r", session.identity, subscription)
                codes.append(codec.SUBACK_FAILURE)
                continue
            granted = min(qos, 1)
            session.subscriptions[subscription] = granted
            self.router.add(session.identity, subscription, granted)
            codes.append(granted)
        return codes

    # --- routing ------------------------------------------------------------------------------

    def publish(self, sender: str, topic: str, payload: bytes, qos: int) -> bool:
        """Route a message from `sender` if the ACL lets it publish there; True if routed."""
        if not self.acl.may_publish(sender, topic):
            self._note_denied(sender, topic)
            return False
        if not self._within_rate(topic):  # after the ACL: only a device's own orders count
            return False
        message = Message(topic, payload, qos)
        for identity, granted in self.router.subscribers(topic).items():
            session = self.sessions.get(identity)
            if session is not None and self.acl.may_receive(identity, topic):
                self._deliver(session, message, granted, None)
        for group in self.router.shared_groups(topic):
            self._deliver_shared(group, message, exclude=None, online_only=False)
        return True

    def _deliver_shared(
        self, group: SharedGroup, message: Message, exclude: str | None, online_only: bool
    ) -> bool:
        """Give `message` to the next member in turn that is online with room in its window,
        else to the next online one, else (unless `online_only`) to any member."""
        chosen = None
        for need in (_READY, _ONLINE) if online_only else (_READY, _ONLINE, _ANY):
            chosen = self._next_member(group, message.topic, exclude, need)
            if chosen is not None:
                break
        if chosen is None:
            return False
        self._deliver(chosen, message, group.members[chosen.identity], group.key)
        return True

    def _next_member(
        self, group: SharedGroup, topic: str, exclude: str | None, need: int
    ) -> Session | None:
        order, count = group.order, len(group.order)
        window = self.config.max_inflight_messages
        for i in range(count):
            identity = order[(group.turn + i) % count]
            session = self.sessions.get(identity)
            if (
                identity == exclude
                or session is None
                or (need != _ANY and session.online() is None)
                or (need == _READY and (len(session.inflight) >= window or session.queue))
                or not self.acl.may_receive(identity, topic)
            ):
                continue
            group.turn = (group.turn + i + 1) % count
            return session
        return None

    def _deliver(
        self, session: Session, message: Message, granted: int, share: tuple[str, str] | None
    ) -> None:
        conn = session.online()
        if granted == 0 or message.qos == 0:
            if conn is not None and conn.has_room_for_qos0():
                conn.send(message.qos0_packet())
            return  # QoS 0 is never queued
        delivery = Delivery(message, share)
        if conn is not None and len(session.inflight) < self.config.max_inflight_messages:
            self._send(session, conn, delivery)
        else:
            self._enqueue(session, delivery)

    def _send(self, session: Session, conn: Connection, delivery: Delivery) -> None:
        packet_id = session.next_packet_id()
        session.inflight[packet_id] = delivery
        message = delivery.message
        conn.send(codec.encode_publish(message.topic_utf8, message.payload, 1, packet_id, False))

    def _enqueue(self, session: Session, delivery: Delivery) -> None:
        if len(session.queue) == session.queue.maxlen:
            session.dropped += 1
            if session.dropped == 1 or session.dropped % 1000 == 0:
                log.warning(
                    "queue of %s is full: dropped its oldest message (%d so far)",
                    session.identity,
                    session.dropped,
                )
        session.queue.append(delivery)

    def _pump(self, session: Session) -> None:
        """Send queued messages while the inflight window has room."""
        conn = session.online()
        limit = self.config.max_inflight_messages
        while conn is not None and session.queue and len(session.inflight) < limit:
            self._send(session, conn, session.queue.popleft())

    def _hand_over_shared(self, session: Session, online_only: bool) -> None:
        """Give this session's pending shared-group messages to other members of their group."""

        def moved(delivery: Delivery) -> bool:
            group = self.router.groups.get(delivery.share) if delivery.share else None
            return group is not None and self._deliver_shared(
                group, delivery.message, exclude=session.identity, online_only=online_only
            )

        session.inflight = {pid: d for pid, d in session.inflight.items() if not moved(d)}
        session.queue = deque(
            [d for d in session.queue if not moved(d)], maxlen=session.queue.maxlen
        )
