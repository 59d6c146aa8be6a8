"""`kym serve`: assemble the database, the CAs, the broker, the MQTT workers and the HTTP API."""

from __future__ import annotations

import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

import uvicorn
from fastapi import FastAPI

from devices import ca, keystore
from gateway import service
from gateway.broker import dynsec, mosquitto, plugin
from gateway.context import BrokerControl, Context, utcnow
from gateway.db import Database
from gateway.events import metrics
from gateway.events.delivery import DeliveryWorker
from gateway.http.app import create_app
from gateway.http.tls import http_tls
from gateway.mqtt.client import GatewayClient
from gateway.mqtt.housekeeper import Housekeeper
from gateway.mqtt.workers import Publisher, Worker, settle_heap
from gateway.settings import Settings, split_host_port
from gateway.startup import Interrupts, bind_http, check_identities, claim_data_dir

log = logging.getLogger("kym.serve")
CRL_REFRESH_S = 12 * 3600  # well inside the CRL's 7-day lifetime


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (for demo, bench and tests)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def admin_token(settings: Settings) -> str:
    """KYM_ADMIN_TOKEN, else the token in DIR/admin-token (created on first start, mode 0600)."""
    if settings.admin_token:
        return settings.admin_token
    path = settings.data_dir / "admin-token"
    if not path.exists():
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"kym_admin_{secrets.token_urlsafe(32)}\n")
        log.info("generated the admin token in %s", path)
    return path.read_text().strip()


def build_context(settings: Settings) -> Context:
    """Initialise the data dir (CAs, admin token, schema); the context without a broker."""
    settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    settings = settings.model_copy(update={"admin_token": admin_token(settings)})
    db = Database(settings.resolved_database_url())
    db.migrate()
    pki = keystore.load_or_create_pki(settings.data_dir, settings.trust_domain, utcnow())
    return Context(settings=settings, db=db, pki=pki)


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int


def broker_address(settings: Settings) -> BrokerAddress:
    """Where the gateway's MQTT clients connect: --broker-url, else the broker on --mqtt."""
    if settings.broker_url:
        url = urlsplit(settings.broker_url)
        if url.scheme not in ("mqtts", "ssl", "tls") or not url.hostname:
            raise ValueError("--broker-url must look like mqtts://HOST:PORT")
        return BrokerAddress(url.hostname, url.port or 8883)
    host, port = split_host_port(settings.mqtt, 8883)
    return BrokerAddress(host, port)


def start_broker(ctx: Context, stack: ExitStack) -> BrokerControl | None:
    """Run the broker `kym serve` owns: Mosquitto when installed, else the embedded one."""
    if ctx.settings.broker_url:
        log.info(
            "using the external broker %s; revocation is enforced by the gateway, and "
            "reloading the CRL there is the operator's job",
            ctx.settings.broker_url,
        )
        return external_broker(ctx)
    address = broker_address(ctx.settings)
    binary = mosquitto.find_mosquitto() if ctx.settings.broker != "embedded" else None
    if ctx.settings.broker == "mosquitto" and not binary:
        raise RuntimeError("--broker mosquitto: no mosquitto binary found (install mosquitto)")
    if binary:
        broker = mosquitto.ManagedMosquitto(
            binary,
            ctx.pki,
            address.host,
            address.port,
            ctx.settings.data_dir / "mosquitto",
            devices=lambda: mosquitto.registered_devices(ctx.db),
            admin_index=ctx.settings.worker_index,
            device_limits=(ctx.settings.device_rate, ctx.settings.device_burst),
        )
        broker.start(utcnow())
        stack.callback(broker.stop)
        return broker
    if ctx.settings.broker == "embedded":
        log.info("serving MQTT with the embedded broker on %s:%d", address.host, address.port)
    else:
        log.warning(
            "mosquitto is not installed: serving MQTT with the embedded broker on %s:%d "
            "(fine for a laptop; install mosquitto for production loads)",
            address.host,
            address.port,
        )
    return start_embedded_broker(ctx, address, stack)


def external_broker(ctx: Context) -> mosquitto.ExternalMosquitto | None:
    """Access rules on a broker that `kym mosquitto-config` configured (it wrote an admin
    identity into DIR): devices that lack an entry get one now."""
    if not dynsec.is_configured(ctx.pki):
        log.warning(
            "no broker admin identity in the data dir: device access rules there are "
            "the operator's job (see `kym mosquitto-config`)"
        )
        return None
    address = broker_address(ctx.settings)
    broker = mosquitto.ExternalMosquitto(
        ctx.pki, address.host, address.port, ctx.settings.worker_index
    )
    try:
        added = broker.sync(mosquitto.registered_devices(ctx.db))
    except dynsec.DynsecError:
        log.exception(
            "could not read the broker's access rules; devices are admitted as they register"
        )
    else:
        if added:
            log.warning("admitted %d registered devices that the broker did not know", added)
    return broker


def start_embedded_broker(ctx: Context, address: BrokerAddress, stack: ExitStack) -> BrokerControl:
    """The pure-Python broker in `gateway.broker`, with the same ACL and identity rules."""
    from gateway.broker import Broker, BrokerConfig

    names = ca.server_names(address.host, socket.gethostname())
    cert, key = keystore.ensure_server_certificate(ctx.pki, names, utcnow())
    broker = Broker(
        BrokerConfig(
            certfile=cert,
            keyfile=key,
            cafile=ctx.pki.paths.device_cafile,
            crlfile=ctx.pki.paths.crl,
            host=address.host,
            port=address.port,
            device_limits=plugin.broker_limits(ctx.settings.device_rate, ctx.settings.device_burst),
        )
    )
    broker.start()
    stack.callback(broker.stop)
    return broker


def start_gateway_clients(ctx: Context, stack: ExitStack) -> list[GatewayClient]:
    """One MQTT client per worker, each with its own certificate identity."""
    address = broker_address(ctx.settings)
    clients = []
    first = ctx.settings.worker_index
    for n in range(first, first + ctx.settings.gateway_workers):
        cert, key = keystore.ensure_gateway_client_identity(ctx.pki, n, utcnow())
        client = GatewayClient(
            address.host, address.port, f"kym-gateway-{n}", cert, key, ctx.pki.paths.bundle
        )
        client.start()
        stack.callback(client.stop)
        clients.append(client)
    return clients


def start_pipeline(
    ctx: Context, clients: list[GatewayClient], publishers: list[Publisher], stack: ExitStack
) -> None:
    """A worker per MQTT client, and one housekeeper for expiries and the outbox."""
    for client, publisher in zip(clients, publishers, strict=True):
        worker = Worker(ctx, client, publisher)
        if ctx.settings.crypto_helpers:
            stack.callback(worker.start_helpers())  # stops them after the worker has stopped
        worker.start()
        stack.callback(worker.join, 5)
        stack.callback(worker.stop)
    housekeeper = Housekeeper(ctx, publishers)
    housekeeper.start()
    stack.callback(housekeeper.join, 5)
    stack.callback(housekeeper.stop)


def start_events(ctx: Context, clients: list[GatewayClient], stack: ExitStack) -> None:
    """The webhook delivery worker, and what the metrics read from this process."""
    webhooks = DeliveryWorker(ctx)
    webhooks.start()
    stack.callback(webhooks.join, 5)
    stack.callback(webhooks.stop)
    metrics.watch("queue_depth", lambda: sum(c.inbox.qsize() for c in clients))
    metrics.watch("broker_connected", lambda: float(all(c.is_connected for c in clients)))


def refresh_crl_periodically(ctx: Context, stop: threading.Event) -> None:
    """Re-issue the CRL twice a day so that an expired CRL never locks the fleet out."""
    while not stop.wait(CRL_REFRESH_S):
        try:
            service.publish_crl(ctx)
        except Exception:  # noqa: BLE001 - retried at the next tick; logged for the operator
            log.exception("could not refresh the CRL")


@contextmanager
def running_gateway(settings: Settings, *, quiet: bool = False) -> Iterator[Running]:
    """Everything `kym serve` runs, with the HTTP API in a background thread; for demo and bench."""
    with ExitStack() as stack:
        claim_data_dir(settings, stack)  # first: a second `kym serve` here touches nothing
        ctx, clients = start_services(settings, stack)
        host, port = split_host_port(settings.http, 8080)
        app = app_for(ctx, clients)
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                log_level="warning",
                access_log=not quiet,
                timeout_graceful_shutdown=3,  # open event streams end with it
            )
        )
        thread = threading.Thread(target=server.run, name="kym-http", daemon=True)
        thread.start()
        stack.callback(thread.join, 5)
        stack.callback(setattr, server, "should_exit", True)
        deadline = time.monotonic() + 15
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        for client in clients:
            client.subscribed.wait(10)
        yield Running(ctx, f"http://{host}:{port}", broker_address(ctx.settings))


@dataclass(frozen=True)
class Running:
    ctx: Context
    api_url: str
    broker: BrokerAddress


def start_services(settings: Settings, stack: ExitStack) -> tuple[Context, list[GatewayClient]]:
    """Data dir, CRL, broker, MQTT clients, workers and housekeeper; stopped by `stack`. The
    caller has claimed the data dir (`claim_data_dir`)."""
    check_identities(settings)  # before anything is made
    base = build_context(settings)
    stack.callback(base.db.dispose)
    base.db.checkpoint_in_background()  # SQLite: no checkpoint in the order path's commits
    service.publish_crl(base)  # no broker yet: the CRL file it will read
    broker = start_broker(base, stack)
    clients = start_gateway_clients(base, stack)
    publishers = [Publisher(client) for client in clients]
    ctx = replace(base, broker=broker, publisher=publishers[0])  # the context from here on
    start_pipeline(ctx, clients, publishers, stack)
    start_events(ctx, clients, stack)
    stop = threading.Event()
    stack.callback(stop.set)
    threading.Thread(target=refresh_crl_periodically, args=(ctx, stop), daemon=True).start()
    return ctx, clients


def app_for(ctx: Context, clients: list[GatewayClient]) -> FastAPI:
    """The HTTP API, healthy while the broker `kym serve` runs is up and every worker's orders
    subscription is granted."""
    broker = ctx.broker
    broker_up = broker.alive if isinstance(broker, mosquitto.ManagedMosquitto) else lambda: True
    return create_app(
        ctx, ready=lambda: broker_up() and all(c.subscribed.is_set() for c in clients)
    )


def serve(settings: Settings) -> None:
    """Run until SIGTERM or SIGINT."""
    interrupts = Interrupts()
    signal.signal(signal.SIGINT, interrupts)
    with ExitStack() as stack:
        claim_data_dir(settings, stack)  # first: a second `kym serve` here touches nothing
        listener = bind_http(settings)
        stack.callback(listener.close)
        ctx, clients = start_services(settings, stack)
        app = app_for(ctx, clients)
        settle_heap()  # started: no full collection walks the start-up's objects again
        host, port = split_host_port(settings.http, 8080)
        tls = http_tls(settings, ctx.pki, ctx.clock())
        config = uvicorn.Config(
            app,
            host=host,
            port=port,
            log_level="info",
            timeout_graceful_shutdown=3,
            ssl_certfile=tls.certfile,
            ssl_keyfile=tls.keyfile,
        )
        log.info(
            "HTTP API on %s://%s:%d (admin token: %s)",
            tls.scheme,
            host,
            port,
            "KYM_ADMIN_TOKEN" if settings.admin_token else settings.data_dir / "admin-token",
        )
        if tls.names and tls.names != (host,):  # a wildcard address names no one to verify
            log.info("its certificate names %s", ", ".join(tls.names))
        server = _Server(config)
        if interrupts.seen:  # a Ctrl-C during start-up that was raised where it got lost
            raise KeyboardInterrupt
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: setattr(server, "should_exit", True))
        server.run(
            sockets=[listener]
        )  # returns; the ExitStack then stops the workers and the broker


class _Server(uvicorn.Server):
    """uvicorn re-raises SIGTERM after its shutdown, which would kill the process before the
    broker it started is stopped; `serve` handles the signals itself instead."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield
