"""A cheap flooder for benchmarks/flood_bench.py (`--raw`): the flood's PUBLISH packets are
encoded up front and written to the TLS socket in 64 kB pieces, so that the flooder spends a
fraction of paho's CPU per message. On this 2-core machine the paho flooder's own CPU (about
70 µs a message) competes with the gateway and the victims, which a device on the far side of a
network would not; with `--raw` the flood arrives faster and costs the machine less.

MQTT 3.1.1 from the spec: CONNECT, SUBSCRIBE (QoS 0) to the device's results, PUBLISH QoS 1
with message ids 1..n (n ≤ 65,535), counting PUBACKs and the kinds of results.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import ssl
import struct
import time
from base64 import urlsafe_b64decode
from collections import Counter
from typing import Any

CHUNK = 65_536


def _length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(text: str) -> bytes:
    raw = text.encode()
    return struct.pack("!H", len(raw)) + raw


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + _length(len(body)) + body


def connect_packet(client_id: str) -> bytes:
    return _packet(0x10, _str("MQTT") + bytes((4, 0x02)) + struct.pack("!H", 60) + _str(client_id))


def subscribe_packet(topic: str) -> bytes:
    return _packet(0x82, struct.pack("!H", 1) + _str(topic) + b"\x00")


def publish_packet(topic: str, payload: bytes, mid: int) -> bytes:
    return _packet(0x32, _str(topic) + struct.pack("!H", mid) + payload)


class RawFlooder:
    """One TLS connection as the device, read and written from one thread (a TLS connection
    is not to be read and written from two): `flood` writes every message and counts what
    comes back."""

    def __init__(self, host: str, port: int, context: ssl.SSLContext, device_id: str) -> None:
        raw = socket.create_connection((host, port))
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = context.wrap_socket(raw, server_hostname=host)
        self.device_id = device_id
        self.answers: Counter[str] = Counter()
        self.acked = 0
        self.disconnected = False  # the broker closed the connection (kym_ratelimit's cut-off)
        self._buf = b""
        self.sock.sendall(connect_packet(device_id))
        self.sock.sendall(subscribe_packet(f"kym/v1/devices/{device_id}/results"))
        self.sock.setblocking(False)
        self._pump(b"", time.monotonic() + 0.5)  # the CONNACK and SUBACK

    def flood(self, payloads: list[bytes], linger_s: float) -> float:
        """Publish every payload (QoS 1) and read the answers for `linger_s` more; seconds
        until the broker acknowledged them all."""
        assert len(payloads) < 65_536, "message ids must stay unique"
        topic = f"kym/v1/devices/{self.device_id}/orders"
        stream = b"".join(publish_packet(topic, p, mid) for mid, p in enumerate(payloads, 1))
        started = time.perf_counter()
        self._pump(stream, time.monotonic() + 120, until_acked=len(payloads))
        published_s = time.perf_counter() - started
        self._pump(b"", time.monotonic() + linger_s)
        return published_s

    def close(self) -> None:
        if not self.disconnected:
            self.sock.setblocking(True)
            with contextlib.suppress(OSError):
                self.sock.sendall(b"\xe0\x00")  # DISCONNECT
        self.sock.close()

    def _pump(self, out: bytes, deadline: float, until_acked: int = 0) -> None:
        try:
            self._pump_until(out, deadline, until_acked)
        except OSError:  # ConnectionError included: the broker cut the flooder off
            self.disconnected = True

    def _pump_until(self, out: bytes, deadline: float, until_acked: int) -> None:
        view, sent = memoryview(out), 0
        while time.monotonic() < deadline and not (until_acked and self.acked >= until_acked):
            writing = [self.sock] if sent < len(out) else []
            readable, writable, _ = select.select([self.sock], writing, [], 0.05)
            if readable or self.sock.pending():
                self._receive()
            if writable:
                with contextlib.suppress(ssl.SSLWantWriteError, ssl.SSLWantReadError):
                    sent += self.sock.send(view[sent : sent + CHUNK])

    def _receive(self) -> None:
        while True:
            try:
                chunk = self.sock.recv(CHUNK)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                return
            if not chunk:
                raise ConnectionError("the broker closed the flooder's connection")
            self._buf = self._packets(self._buf + chunk)

    def _packets(self, buf: bytes) -> bytes:
        while len(buf) >= 2:
            length, shift, at = 0, 0, 1
            while at < len(buf):
                length |= (buf[at] & 0x7F) << shift
                at += 1
                if buf[at - 1] < 0x80:
                    break
                shift += 7
            else:
                return buf
            if at + length > len(buf):
                return buf
            self._packet(buf[0], buf[at : at + length])
            buf = buf[at + length :]
        return buf

    def _packet(self, first: int, body: bytes) -> None:
        if first >> 4 == 4:  # PUBACK
            self.acked += 1
        elif first >> 4 == 3:  # a result, at QoS 0 (subscribed so: nothing to acknowledge)
            topic_end = 2 + int(struct.unpack("!H", body[:2])[0])
            claims = _claims(body[topic_end:])
            self.answers[f"{claims.get('status')}/{claims.get('reason')}"] += 1


def _claims(token: bytes) -> dict[str, Any]:
    """A compact JWS's payload, unverified (the benchmark only counts kinds of answers)."""
    part = token.split(b".")[1]
    decoded: dict[str, Any] = json.loads(urlsafe_b64decode(part + b"=" * (-len(part) % 4)))
    return decoded
