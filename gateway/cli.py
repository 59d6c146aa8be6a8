"""The `kym` command line.

The only gateway module that may import `simulators`: it assembles the demo, `kym simulate`
and `kym bench`, which are clients of the gateway like any firmware.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import click

from devices.sdk.commands import device
from gateway.cli_checks import (
    DATA_DIR,
    DATABASE_URL,
    Kym,
    audit,
    env_names,
    env_of,
    fail,
    ledger,
    settings_from,
    starting,
)
from gateway.cli_workers import retire_worker
from gateway.evidence.command import evidence
from gateway.settings import Settings, split_host_port
from simulators.cli import bench_command, simulate

if TYPE_CHECKING:
    from gateway.server import Running
    from simulators.demo.run import DemoGateway

BROKERS = click.Choice(["auto", "mosquitto", "embedded"])


@click.group(
    cls=Kym,
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog=f"`kym serve` reads {env_names()}; a flag wins over its variable. "
    "`kym device` reads KYM_API_URL, KYM_API_KEY, KYM_API_CA, KYM_DEVICE_DIR and "
    "KYM_DEVICE_BROKER_URL; "
    "`kym simulate` reads KYM_API_URL, KYM_DEVICE_BROKER_URL, KYM_ADMIN_TOKEN and KYM_DATA_DIR. "
    "`kym COMMAND --help` lists what each command reads.",
)
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")
def main(verbose: bool) -> None:
    """KYM: a gateway that lets machines pay, with their owners' consent.

    \b
    Start with:
      kym demo --duration 30           the whole story in 30 s, nothing to set up
      kym serve --data-dir ./kym-data  the gateway on 127.0.0.1:8080 and :8883
    """
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("psycopg").addFilter(_not_an_aborted_pipeline)


def _not_an_aborted_pipeline(record: logging.LogRecord) -> bool:
    """Drop psycopg's "error ignored terminating <Pipeline>: pipeline aborted": it follows
    every statement that fails in a pipeline, whose own error is raised and handled (a line
    every retry, 2 a second, while a full disk fails the worker's batches)."""
    args = record.args if isinstance(record.args, tuple) else ()
    aborted = len(args) == 2 and type(args[1]).__name__ == "PipelineAborted"
    return not (record.msg == "error ignored terminating %r: %s" and aborted)


DEVICE_RATE = click.option(
    "--device-rate",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="N",
    help="Orders a second each device may send, sustained; more are not decided "
    f"(rate_limited) {env_of('device_rate')}.",
)
DEVICE_BURST = click.option(
    "--device-burst",
    type=click.IntRange(min=1),
    default=None,
    metavar="M",
    help=f"Orders a device may send at once before its rate applies {env_of('device_burst')}.",
)


@main.command(
    short_help="Run the gateway: HTTP API, order pipeline and a broker.",
    epilog=f"Reads {env_names()} (a flag wins over its variable).",
)
@DATA_DIR
@DATABASE_URL
@click.option(
    "--http",
    default=None,
    metavar="HOST:PORT",
    help="HTTP API address [env KYM_HTTP; default 127.0.0.1:8080].",
)
@click.option(
    "--http-tls",
    is_flag=True,
    default=None,
    help="Serve the HTTP API over TLS with a certificate from the service root naming the "
    "--http host (for 0.0.0.0 or ::, also localhost, 127.0.0.1 and this machine's hostname), "
    "verifiable with GET /v1/ca [env KYM_HTTP_TLS].",
)
@click.option(
    "--http-cert",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    metavar="FILE",
    help="Serve the HTTP API over TLS with this certificate (chain), PEM; needs --http-key "
    "[env KYM_HTTP_CERT].",
)
@click.option(
    "--http-key",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    metavar="FILE",
    help="The private key of --http-cert, PEM [env KYM_HTTP_KEY].",
)
@click.option(
    "--mqtt",
    default=None,
    metavar="HOST:PORT",
    help="Address of the TLS broker that serve starts [env KYM_MQTT; default 127.0.0.1:8883].",
)
@click.option(
    "--broker-url",
    default=None,
    metavar="mqtts://HOST:PORT",
    help="Use an external broker instead of starting one (--mqtt is then ignored) "
    "[env KYM_BROKER_URL].",
)
@click.option(
    "--broker",
    type=BROKERS,
    default=None,
    help="Which broker to start: auto picks Mosquitto when installed [env KYM_BROKER; "
    "default auto].",
)
@click.option(
    "--workers",
    "gateway_workers",
    type=int,
    default=None,
    help="Gateway MQTT workers in this process, each with its own identity "
    f"{env_of('gateway_workers')}.",
)
@click.option(
    "--worker-index",
    type=int,
    default=None,
    help="First gateway identity of this process (n in kym-gateway-<n>), so that several "
    f"processes sharing a broker each have their own {env_of('worker_index')}.",
)
@DEVICE_RATE
@DEVICE_BURST
@click.option(
    "--dispute-response-days",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="DAYS",
    help="How long a payee has to answer a dispute before it is resolved for the owner "
    f"(fractions allowed) {env_of('dispute_response_days')}.",
)
@click.option(
    "--webhook-allow-private",
    is_flag=True,
    default=None,
    help="Let webhooks reach loopback, private and link-local addresses (for development and "
    "tests only) [env KYM_WEBHOOK_ALLOW_PRIVATE].",
)
def serve(**flags: Any) -> None:
    """Run the gateway: HTTP API, MQTT order pipeline and (unless --broker-url) a broker.

    The admin token is KYM_ADMIN_TOKEN, else DIR/admin-token (made on first start).
    It runs until Ctrl-C or SIGTERM.

    \b
    Example:
      kym serve --data-dir ./kym-data --http 127.0.0.1:8080 --mqtt 127.0.0.1:8883
      curl http://127.0.0.1:8080/healthz
    """
    from gateway.http.tls import check_pair
    from gateway.server import serve as run

    if (flags["http_cert"] is None) != (flags["http_key"] is None):
        fail("--http-cert and --http-key go together")
    settings = settings_from(**flags)
    with starting("serve"):
        if settings.http_cert is not None and settings.http_key is not None:
            check_pair(str(settings.http_cert), str(settings.http_key))  # before all else
        run(settings)


@main.command(
    "mosquitto-config",
    short_help="Write the configuration of an external Mosquitto.",
    epilog="Reads KYM_DATA_DIR, KYM_DATABASE_URL, KYM_TRUST_DOMAIN, KYM_DEVICE_RATE and "
    "KYM_DEVICE_BURST.",
)
@DATA_DIR
@DATABASE_URL
@click.option("--listen", required=True, metavar="HOST:PORT", help="The broker's TLS listener.")
@DEVICE_RATE
@DEVICE_BURST
@click.option(
    "--out",
    "outdir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for mosquitto.conf and the files it names.",
)
def mosquitto_config(
    data_dir: Path | None,
    database_url: str | None,
    listen: str,
    outdir: Path,
    **limit_flags: Any,
) -> None:
    """Write a Mosquitto 2.0 configuration that admits only certified devices and gateways.

    \b
    Example:
      kym mosquitto-config --data-dir kym-data --listen 0.0.0.0:8883 --out broker
      mosquitto -c broker/mosquitto.conf
      kym serve --data-dir kym-data --broker-url mqtts://127.0.0.1:8883

    With a C compiler installed, it also builds the kym_ratelimit plugin beside it: the broker
    then drops a device's orders beyond twice its rate (give the same --device-rate and
    --device-burst as to `kym serve`), so that a flood never queues ahead of other devices.
    """
    from gateway.broker import mosquitto
    from gateway.context import utcnow
    from gateway.server import build_context
    from gateway.service import publish_crl

    settings = settings_from(data_dir=data_dir, database_url=database_url, **limit_flags)
    try:
        host, port = split_host_port(listen, 8883)
    except ValueError:
        fail(f"--listen: {listen!r} is not HOST:PORT (e.g. 0.0.0.0:8883)")
    sqlite = settings.data_dir / "kym.db"
    if (
        settings.database_url is None
        and (settings.data_dir / "ca").is_dir()
        and not sqlite.exists()
    ):
        fail(
            f"{settings.data_dir} has its CAs but no {sqlite.name}: give --database-url (or "
            "KYM_DATABASE_URL) of the database its kym serve uses"
        )
    with starting("mosquitto-config"):
        outdir.mkdir(parents=True, exist_ok=True)  # before the data dir is made
        ctx = build_context(settings)
        publish_crl(ctx)
        devices = mosquitto.registered_devices(ctx.db)  # each gets its dynsec entry
        limits = (ctx.settings.device_rate, ctx.settings.device_burst)
        conf = mosquitto.write_config(
            ctx.pki, host, port, outdir, utcnow(), devices=devices, device_limits=limits
        )
    click.echo(f"wrote {conf}\nstart it with: mosquitto -c {conf}")


@main.command(short_help="Devices paying through the gateway, live, in a temp dir.")
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    metavar="SECONDS",
    help="Stop after this many seconds and print the summary [run until Ctrl-C].",
)
@click.option(
    "--broker",
    type=BROKERS,
    default="auto",
    show_default=True,
    help="Which broker to start: auto picks Mosquitto when installed, else the embedded one.",
)
def demo(duration: float | None, broker: str) -> None:
    """Tell the whole story on embedded defaults: devices paying through the gateway, live.

    It runs a gateway of its own in a temp dir: KYM_DATA_DIR, KYM_DATABASE_URL, KYM_HTTP,
    KYM_MQTT, KYM_BROKER_URL, KYM_BROKER and KYM_ADMIN_TOKEN do not apply.

    \b
    Example:
      kym demo --duration 30
    """
    verbose = bool(click.get_current_context().find_root().params.get("verbose"))
    if not verbose:
        logging.getLogger().setLevel(logging.WARNING)  # the demo's own lines tell the story
    import tempfile
    from contextlib import ExitStack

    from rich.console import Console

    from gateway.server import running_gateway
    from simulators.demo.run import run_demo

    # Without a terminal (CI logs), lines as wide as the summary's tables need.
    wide = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 120
    console = Console(highlight=False, width=wide)
    with tempfile.TemporaryDirectory(prefix="kym-demo-", ignore_cleanup_errors=True) as tmp:
        started = time.monotonic()
        try:
            with ExitStack() as stack:
                with console.status("starting the gateway"):
                    running = stack.enter_context(
                        running_gateway(demo_settings(Path(tmp), broker), quiet=not verbose)
                    )
                if verbose:  # the gateway's access log too, on stderr with the other logs
                    access = logging.getLogger("uvicorn.access")
                    access.handlers.clear()
                    access.setLevel(logging.INFO)
                    access.propagate = True
                code = run_demo(
                    demo_gateway(running, Path(tmp)), duration, console, started=started
                )
        except KeyboardInterrupt:
            console.print("interrupted")
            code = 130
    sys.exit(code)


def demo_settings(tmp: Path, broker: str) -> Settings:
    """A gateway of its own in `tmp`: SQLite, free local ports, a fresh admin token."""
    import secrets

    from gateway.server import free_port

    return Settings(
        data_dir=tmp / "data",
        database_url=f"sqlite:///{tmp / 'kym.db'}",
        http=f"127.0.0.1:{free_port()}",
        mqtt=f"127.0.0.1:{free_port()}",
        broker_url=None,
        broker=cast(Any, broker),  # click.Choice checked it; pydantic checks it again
        admin_token=secrets.token_urlsafe(24),
        gateway_workers=1,
        worker_index=0,
    )


def demo_gateway(running: Running, home: Path) -> DemoGateway:
    """What the demo needs of the running gateway: addresses, the admin token, a verdict from
    the same checks as `kym ledger check` and `kym audit verify`, and console sign-in links."""
    from gateway.broker.mosquitto import ManagedMosquitto
    from gateway.console import sign_in_link
    from gateway.service import verify_audit
    from simulators.demo.run import DemoGateway
    from simulators.demo.view import Verdict
    from simulators.fleet import Broker
    from wallet.check import check

    db = running.ctx.db

    def verify() -> Verdict:
        with db.snapshot() as conn:
            breaches = [str(breach) for breach in check(conn)]
        entries, bad = verify_audit(db, running.ctx.pki.signer.private_key.public_key())
        return Verdict(breaches, entries, None if bad is None else f"entry {bad[0]}: {bad[1]}")

    mosquitto = isinstance(running.ctx.broker, ManagedMosquitto)
    return DemoGateway(
        api_url=running.api_url,
        broker=Broker(running.broker.host, running.broker.port),
        broker_name="Mosquitto" if mosquitto else "the embedded broker",
        admin_token=running.ctx.settings.admin_token or "",
        home=home,
        verify=verify,
        console_link=lambda api_key: sign_in_link(running.ctx, api_key, running.api_url),
    )


main.add_command(audit)
main.add_command(device)
main.add_command(evidence)
main.add_command(ledger)
main.add_command(retire_worker)
main.add_command(simulate)
main.add_command(bench_command([sys.executable, "-m", "gateway.cli", "serve"]))

if __name__ == "__main__":  # pragma: no cover
    main()
