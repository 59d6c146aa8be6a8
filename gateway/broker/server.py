"""The embedded MQTT broker that `kym serve` runs when no `mosquitto` binary is installed.

Small and strict, for KYM's traffic only: MQTT 3.1.1 (and 3.1, "MQIsdp") over TLS with a
required client certificate, on asyncio in a thread of its own (`Broker.start`/`stop`). This
module holds the TLS server and its connections; the MQTT state machine it drives, with no I/O
of its own, is in `sessions.py` (with `state.py` and `routing.py`), its settings in `config.py`.

- Identity: a client's identity is its certificate's subject CN, which must have the
  clientAuth extended key usage. It is the username *and* the client id: whatever the CONNECT
  says is ignored (Mosquitto's `use_identity_as_username` and `use_username_as_clientid`), so
  nobody can touch another identity's session. No session state is read or changed before a
  CONNECT is accepted. A second connection with the same identity takes over the first.
- Refused: an MQTT 5 (or any other level) CONNECT gets CONNACK return code 1 and is closed; a
  certificate without a usable CN or clientAuth, or a will the ACL forbids, gets return code 5,
  and so does a certificate that the CRL revoked after its handshake (the CRL is checked again
  at CONNECT: a connection held open from before a revocation or rotation cannot log in after).
- QoS: 0 and 1. A QoS 2 PUBLISH is a protocol error and closes the connection; subscriptions
  are granted at most QoS 1. Retained messages are not stored; the retain flag is cleared.
- ACL (`acl.py`): checked at SUBSCRIBE (refused filters get 0x80), at PUBLISH and again at
  delivery. A forbidden PUBLISH is dropped, never delivered, and a QoS 1 one is still
  acknowledged, like Mosquitto does for MQTT 3.1.1; the connection stays open.
- Will: refused at CONNECT unless the ACL lets the client publish there; published through the
  same path when the connection ends without DISCONNECT (network error, keepalive, protocol
  error), but not when it is taken over, kicked or the broker stops.
- Sessions: clean_session=1 state ends with the connection; clean_session=0 keeps
  subscriptions, queues QoS 1 messages while offline and resends unacknowledged ones with DUP
  on reconnect. QoS 0 messages are not queued offline. At most `max_inflight_messages` QoS 1
  messages are unacknowledged per client; the rest wait in a queue of `max_queued_messages`
  (`gateway_max_queued_messages` for gateways), whose oldest entry is dropped when it is full.
  Sessions live in memory only: a broker restart forgets them.
- Shared subscriptions `$share/<group>/<filter>`: each message goes to one member, in turn,
  preferring members that are online with room in their window; a member that leaves hands its
  unacknowledged messages of that group to another member if there is one.
- Keepalive is enforced at 1.5 times the client's value; a frame over `max_packet_size`
  closes the connection.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import re
import socket
import ssl
import tempfile
import threading
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from gateway.broker import codec
from gateway.broker.acl import is_valid_identity
from gateway.broker.config import BrokerConfig
from gateway.broker.sessions import BrokerCore
from gateway.broker.state import Connection

log = logging.getLogger("kym.broker")
T = TypeVar("T")
_READ_SIZE = 65_536
# A client this far behind in reading what it is sent (answers to its PINGREQs, say) is
# disconnected: the buffer is the gateway's own memory, and it grew 5 MB/s for one that sent
# PINGREQs and never read, slowing every other device's round trip from 0.15 to 350 ms.
_WRITE_BUFFER_LIMIT = 4 << 20
_REAP_INTERVAL_S = 0.5
_CRL_PEM = re.compile(rb"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----\s*", re.DOTALL)


# A certificate as a CRL names it: its issuer's name (DER) and its serial number.
CertificateId = tuple[bytes, int]


def build_ssl_context(config: BrokerConfig) -> ssl.SSLContext:
    """A server context that requires a client certificate from `cafile`, checked against CRLs."""
    return _tls(config)[0]


def _tls(config: BrokerConfig) -> tuple[ssl.SSLContext, frozenset[CertificateId]]:
    """The server context, and the certificates its CRLs revoke."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_cert_chain(config.certfile, config.keyfile)
    ctx.load_verify_locations(cafile=config.cafile)
    revoked: frozenset[CertificateId] = frozenset()
    if config.crlfile is not None:
        revoked = _load_crls(ctx, Path(config.crlfile))
        ctx.verify_flags |= ssl.VERIFY_CRL_CHECK_LEAF
    return ctx, revoked


def _load_crls(ctx: ssl.SSLContext, path: Path) -> frozenset[CertificateId]:
    """Load every PEM CRL in `path`, and nothing else: a certificate there is not trusted.
    Returns the certificates they revoke."""
    blocks = _CRL_PEM.findall(path.read_bytes())
    if not blocks:  # with CRL checking on and no CRL, OpenSSL would refuse every client
        raise ValueError(f"{path} holds no PEM CRL")
    now = datetime.now(UTC)
    revoked: set[CertificateId] = set()
    for block in blocks:
        crl = x509.load_pem_x509_crl(block)  # raises ValueError on a damaged CRL
        issuer = crl.issuer.public_bytes()
        revoked.update((issuer, entry.serial_number) for entry in crl)
        if crl.next_update_utc is not None and crl.next_update_utc < now:
            log.error(
                "the CRL of %s in %s expired at %s: its certificates are all refused",
                crl.issuer.rfc4514_string(),
                path,
                crl.next_update_utc,
            )
    with tempfile.NamedTemporaryFile(suffix=".pem") as only_crls:
        only_crls.write(b"".join(blocks))
        only_crls.flush()
        ctx.load_verify_locations(cafile=only_crls.name)
    return frozenset(revoked)


def certificate_id_of(der: bytes | None) -> CertificateId | None:
    """The issuer and serial number of a client certificate, as a CRL would name it."""
    if der is None:
        return None
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError:
        return None
    return cert.issuer.public_bytes(), cert.serial_number


def identity_of(der: bytes | None) -> str | None:
    """The subject CN of a client certificate that allows clientAuth, or None."""
    if der is None:
        return None
    try:
        cert = x509.load_der_x509_certificate(der)
        usage = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except (ValueError, x509.ExtensionNotFound):
        return None
    if ExtendedKeyUsageOID.CLIENT_AUTH not in usage or len(names) != 1:
        return None
    name = names[0].value
    return name if isinstance(name, str) and is_valid_identity(name) else None


class Broker:
    """The embedded broker: an asyncio TLS server on a thread of its own.

    `start`, `stop`, `kick` and `reload_crl` may be called from any thread but the broker's.
    """

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        # What the CRLs revoke, checked again at CONNECT: a connection whose handshake passed
        # before a revocation would otherwise log in after it, with every right.
        self._ssl_context, self._revoked = _tls(config)
        self._core = BrokerCore(config)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop_event: asyncio.Event | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._awaiting_connect: set[Connection] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._port: int | None = None

    @property
    def port(self) -> int:
        """The port the broker listens on (the real one when the config asked for 0)."""
        assert self._port is not None, "the broker is not started"
        return self._port

    def start(self, timeout_s: float = 10.0) -> None:
        """Start serving; returns once the listening socket is bound."""
        assert self._thread is None, "a Broker starts only once"
        ready: concurrent.futures.Future[int] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=asyncio.run, args=(self._main(ready),), name="kym-broker", daemon=True
        )
        self._thread.start()
        self._port = ready.result(timeout_s)
        log.info("broker listening on %s:%d", self.config.host, self._port)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Close every connection and the listener, and end the broker's thread."""
        loop, event, thread = self._loop, self._stop_event, self._thread
        if loop is None or event is None or thread is None or not thread.is_alive():
            return
        with contextlib.suppress(RuntimeError):  # the loop ended meanwhile
            loop.call_soon_threadsafe(event.set)
        thread.join(timeout_s)
        if thread.is_alive():
            log.error("the broker's thread did not end within %.1f s", timeout_s)

    def kick(self, identity: str) -> bool:
        """End `identity`'s live session at once and drop its persistent session."""
        return self._call(self._core.kick, identity)

    def allow_device(self, device_id: str) -> None:
        """Nothing to do: the ACL's patterns already cover every device identity."""

    def forget_device(self, device_id: str) -> None:
        """End a revoked device's live session (its certificate is refused from then on)."""
        self.kick(device_id)

    def reload_crl(self) -> None:
        """Rebuild the TLS context from the files, so that new handshakes see the current CRL.

        Live sessions are not affected: kick the revoked identities after this. A connection
        whose handshake passed before is refused at its CONNECT. If the files are damaged this
        raises and the previous context stays in use.
        """
        context, revoked = _tls(self.config)
        self._revoked = revoked  # first: a CONNECT from now on is checked against it
        self._ssl_context = context
        log.info("reloaded the CRL from %s", self.config.crlfile)

    def __enter__(self) -> Broker:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _call(self, fn: Callable[[str], T], arg: str, timeout_s: float = 5.0) -> T:
        loop = self._loop
        assert loop is not None, "the broker is not started"

        async def run() -> T:
            return fn(arg)

        return asyncio.run_coroutine_threadsafe(run(), loop).result(timeout_s)

    async def _main(self, ready: concurrent.futures.Future[int]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop_event = asyncio.Event()
        try:
            server = await asyncio.start_server(self._accept, self.config.host, self.config.port)
        except BaseException as exc:
            ready.set_exception(exc)
            return
        ready.set_result(server.sockets[0].getsockname()[1])
        reaper = asyncio.create_task(self._reap())
        await self._stop_event.wait()
        server.close()
        reaper.cancel()
        await self._close_all()
        await server.wait_closed()
        log.info("broker stopped")

    async def _close_all(self) -> None:
        self._core.stopping = True
        for writer in list(self._writers):
            writer.transport.abort()
        if self._tasks:
            _, late = await asyncio.wait(list(self._tasks), timeout=2.0)
            for task in late:
                task.cancel()

    async def _reap(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(_REAP_INTERVAL_S)
            now = loop.time()
            self._core.reap(now)
            for conn in list(self._awaiting_connect):
                if now - conn.opened_at > self.config.connect_timeout_s:
                    log.info("no CONNECT within %.0f s: closing", self.config.connect_timeout_s)
                    conn.transport.abort()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Nothing may be awaited before start_tls, so that the ClientHello stays unread.
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = await self._handshake(writer)
            if conn is None:
                writer.close()
            else:
                await self._serve(conn, reader)
                await _close(writer)
        except asyncio.CancelledError:
            writer.transport.abort()  # the broker is stopping; end this task quietly
        finally:
            self._writers.discard(writer)
            self._tasks.discard(task)

    async def _handshake(self, writer: asyncio.StreamWriter) -> Connection | None:
        peer = writer.get_extra_info("peername")
        try:
            await writer.start_tls(
                self._ssl_context, ssl_handshake_timeout=self.config.handshake_timeout_s
            )
        except OSError as exc:  # ssl.SSLError and TimeoutError included
            log.info("TLS handshake with %s failed: %s", peer, exc)
            return None
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        identity = identity_of(der)
        if identity is None:
            log.warning("client certificate of %s has no usable CN or lacks clientAuth", peer)
        loop = asyncio.get_running_loop()
        conn = Connection(identity, writer.transport, loop.time(), loop.call_soon)
        conn.certificate = certificate_id_of(der)
        return conn

    async def _serve(self, conn: Connection, reader: asyncio.StreamReader) -> None:
        """Read and handle packets until the connection ends, then part it from its session."""
        loop = asyncio.get_running_loop()
        framer = codec.Framer(self.config.max_packet_size)
        self._awaiting_connect.add(conn)
        try:
            while data := await reader.read(_READ_SIZE):
                conn.last_seen = loop.time()
                for first_byte, body in framer.feed(data):
                    if not self._handle(conn, first_byte, body):
                        return
                if conn.transport.get_write_buffer_size() > _WRITE_BUFFER_LIMIT:
                    log.warning(
                        "closing %s: it does not read what it is sent", conn.identity or "a client"
                    )
                    return
        except codec.MalformedPacket as exc:
            log.warning("closing %s: %s", conn.identity or "an unidentified client", exc)
        except OSError as exc:
            log.info("connection of %s lost: %s", conn.identity, exc)
        except Exception:
            log.exception("bug while serving %s: closing its connection", conn.identity)
        finally:
            self._awaiting_connect.discard(conn)
            conn.flush()  # e.g. a refusing CONNACK, before the connection closes
            self._core.detach(conn, publish_will=True)  # DISCONNECT has cleared the will

    def _handle(self, conn: Connection, first_byte: int, body: bytes) -> bool:
        """Handle one frame; returns False when the connection must end."""
        if conn.ended:
            return False
        if conn.session is not None:
            return self._core.on_packet(conn, codec.decode(first_byte, body))
        if first_byte != codec.CONNECT << 4:
            raise codec.MalformedPacket("the first packet is not a CONNECT")
        self._awaiting_connect.discard(conn)
        try:
            connect = codec.decode_connect(body)
        except codec.UnsupportedProtocolLevel as exc:
            log.warning("refused CONNECT from %s: %s", conn.identity, exc)
            conn.send(codec.encode_connack(False, codec.CONNACK_BAD_PROTOCOL_LEVEL))
            return False
        if conn.certificate is None or conn.certificate in self._revoked:
            log.warning("refused CONNECT from %s: its certificate is revoked", conn.identity)
            conn.send(codec.encode_connack(False, codec.CONNACK_NOT_AUTHORIZED))
            return False
        return self._core.on_connect(conn, connect)


async def _close(writer: asyncio.StreamWriter) -> None:
    """Close with a TLS close_notify after the pending bytes, aborting if the peer lingers."""
    writer.close()
    try:
        await asyncio.wait_for(writer.wait_closed(), 2.0)
    except OSError:  # ssl.SSLError and TimeoutError included
        writer.transport.abort()
