"""The `kym` command line."""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import click

from gateway.settings import Settings, split_host_port

DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the database, CAs and admin token live [env KYM_DATA_DIR; default ./kym-data].",
)
DATABASE_URL = click.option(
    "--database-url",
    default=None,
    metavar="URL",
    help="e.g. postgresql+psycopg://user@host/db [env KYM_DATABASE_URL; default SQLite in DIR].",
)


def settings_from(**flags: Any) -> Settings:
    """Settings from the flags that were given, then KYM_* variables, then defaults."""
    return Settings(**{k: v for k, v in flags.items() if v is not None})


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log debug detail.")
def main(verbose: bool) -> None:
    """KYM: a gateway that lets machines pay, with their owners' consent."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)-7s %(name)s: %(message)s",
    )
    for noisy in ("httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@main.command()
@DATA_DIR
@DATABASE_URL
@click.option(
    "--http", default=None, metavar="HOST:PORT", help="HTTP API address [127.0.0.1:8080]."
)
@click.option(
    "--mqtt",
    default=None,
    metavar="HOST:PORT",
    help="Address of the TLS broker that serve starts [127.0.0.1:8883].",
)
@click.option(
    "--broker-url",
    default=None,
    metavar="mqtts://HOST:PORT",
    help="Use an external broker instead of starting one (--mqtt is then ignored).",
)
@click.option(
    "--broker",
    type=click.Choice(["auto", "mosquitto", "embedded"]),
    default=None,
    help="Which broker to start: auto picks Mosquitto when installed [auto].",
)
@click.option(
    "--workers",
    "gateway_workers",
    type=int,
    default=None,
    help="Gateway MQTT workers in this process, each with its own identity [1].",
)
@click.option(
    "--worker-index",
    type=int,
    default=None,
    help="First gateway identity of this process (kym-gateway-<n>), so that several "
    "processes sharing a broker each have their own [0].",
)
def serve(**flags: Any) -> None:
    """Run the gateway: HTTP API, MQTT order pipeline and (unless --broker-url) a broker."""
    from gateway.server import serve as run

    run(settings_from(**flags))


@main.command("mosquitto-config")
@DATA_DIR
@click.option("--listen", required=True, metavar="HOST:PORT", help="The broker's TLS listener.")
@click.option(
    "--out",
    "outdir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for mosquitto.conf and the files it names.",
)
def mosquitto_config(data_dir: Path | None, listen: str, outdir: Path) -> None:
    """Write a Mosquitto 2.0 configuration that admits only certified devices and gateways."""
    from gateway.broker import mosquitto
    from gateway.server import build_context
    from gateway.service import publish_crl, utcnow

    ctx = build_context(settings_from(data_dir=data_dir))
    publish_crl(ctx)
    host, port = split_host_port(listen, 8883)
    conf = mosquitto.write_config(ctx.pki, host, port, outdir, utcnow())
    click.echo(f"wrote {conf}\nstart it with: mosquitto -c {conf}")


@main.group()
def audit() -> None:
    """Inspect the tamper-evident audit trail."""


@audit.command("verify")
@DATA_DIR
@DATABASE_URL
def audit_verify(**flags: Any) -> None:
    """Check the audit hash chain; exit 1 naming the first bad entry."""
    from gateway.db import Database
    from gateway.service import verify_audit

    settings = settings_from(**flags)
    db = Database(settings.resolved_database_url())
    count, problem = verify_audit(db)
    if problem is not None:
        seq, why = problem
        click.echo(f"audit chain BROKEN at entry {seq}: {why}", err=True)
        sys.exit(1)
    click.echo(f"audit chain intact: {count} entries")


@main.command()
@click.option("--devices", default=20, show_default=True, help="Simulated devices.")
@click.option("--orders", default=5000, show_default=True, help="Orders in all.")
@click.option("--rate", type=float, default=None, help="Orders per second (default: flat out).")
@DATABASE_URL
@click.option(
    "--broker",
    type=click.Choice(["auto", "mosquitto", "embedded"]),
    default="auto",
    show_default=True,
)
@click.option(
    "--key-type", type=click.Choice(["p256", "ed25519"]), default="p256", show_default=True
)
def bench(
    devices: int,
    orders: int,
    rate: float | None,
    database_url: str | None,
    broker: str,
    key_type: str,
) -> None:
    """Measure payments per second end to end: devices → broker → gateway → ledger → results."""
    from rich.console import Console

    from gateway.bench import print_report, run_bench

    console = Console()
    numbers = run_bench(devices, orders, rate, database_url, broker, key_type, console)
    label = f"{devices} devices, {key_type}, {broker} broker, {database_url or 'SQLite'}"
    print_report(numbers, label, console)
    if numbers["results"] < numbers["orders"]:
        sys.exit(1)


@main.command()
@click.option(
    "--duration",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Stop after this many seconds and print the summary [run until Ctrl-C].",
)
@click.option(
    "--broker",
    type=click.Choice(["auto", "mosquitto", "embedded"]),
    default="auto",
    show_default=True,
    help="Which broker to start: auto picks Mosquitto when installed, else the embedded one.",
)
def demo(duration: float | None, broker: str) -> None:
    """Tell the whole story on embedded defaults: devices paying through the gateway, live."""
    if not click.get_current_context().find_root().params.get("verbose"):
        logging.getLogger().setLevel(logging.WARNING)  # the demo's own lines tell the story
    import os

    from rich.console import Console

    from gateway.demo import run_demo

    # Without a terminal (CI logs), lines as wide as the summary's tables need.
    wide = None if sys.stdout.isatty() or "COLUMNS" in os.environ else 120
    sys.exit(run_demo(duration, broker, Console(highlight=False, width=wide)))


@main.command()
@click.option(
    "--devices",
    type=int,
    default=10,
    show_default=True,
    help="Paying devices (cars, fridges, smart meters, one misbehaving from 5 on); "
    "stations for the cars come on top.",
)
@click.option(
    "--rate",
    type=float,
    default=10.0,
    show_default=True,
    help="Arrivals per second, on a fixed schedule whatever the answers (open loop).",
)
@click.option(
    "--duration",
    type=float,
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="Seconds of arrivals; answers then get up to --settle seconds more.",
)
@click.option("--settle", type=float, default=10.0, show_default=True, metavar="SECONDS")
@click.option(
    "--api",
    default="http://127.0.0.1:8080",
    show_default=True,
    metavar="URL",
    help="The gateway's HTTP API.",
)
@click.option(
    "--broker-url",
    default="mqtts://127.0.0.1:8883",
    show_default=True,
    metavar="mqtts://HOST:PORT",
    help="The broker the devices connect to.",
)
@click.option(
    "--admin-token",
    default=None,
    envvar="KYM_ADMIN_TOKEN",
    help="[env KYM_ADMIN_TOKEN; default: the admin-token file in --data-dir].",
)
@DATA_DIR
@click.option(
    "--state-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="A new dir for the devices' keys and journals [a temp dir, removed after].",
)
@click.option("--seed", type=int, default=0, show_default=True)
def simulate(
    devices: int,
    rate: float,
    duration: float,
    settle: float,
    api: str,
    broker_url: str,
    admin_token: str | None,
    data_dir: Path | None,
    state_dir: Path | None,
    seed: int,
) -> None:
    """Run a population of simulated devices against a running gateway; print what it saw."""
    import tempfile
    from urllib.parse import urlsplit

    import httpx

    from devices.sdk import ApiError
    from simulators.population import run_population

    token = admin_token or _admin_token_file(settings_from(data_dir=data_dir).data_dir)
    broker = urlsplit(broker_url)
    if broker.scheme not in ("mqtts", "ssl", "tls") or not broker.hostname:
        raise click.BadParameter("must look like mqtts://HOST:PORT", param_hint="--broker-url")
    if state_dir is not None and state_dir.exists() and any(state_dir.iterdir()):
        raise click.BadParameter(f"{state_dir} is not empty", param_hint="--state-dir")
    with tempfile.TemporaryDirectory(prefix="kym-simulate-") as tmp:
        try:
            summary = run_population(
                api,
                broker.hostname,
                broker.port or 8883,
                token,
                devices,
                rate,
                duration,
                state_dir or Path(tmp) / "fleet",
                seed=seed,
                settle_s=settle,
            )
        except ApiError as exc:
            raise click.ClickException(f"the gateway at {api} refused: {exc}") from exc
        except httpx.HTTPError as exc:
            raise click.ClickException(f"cannot reach the gateway at {api}: {exc}") from exc
    click.echo(summary.render())
    if summary.surprises or summary.dropped or summary.unanswered:
        sys.exit(1)


def _admin_token_file(data_dir: Path) -> str:
    path = data_dir / "admin-token"
    if not path.is_file():
        raise click.UsageError(
            f"no admin token: pass --admin-token, set KYM_ADMIN_TOKEN or "
            f"point --data-dir at the gateway's data dir (no {path})"
        )
    return path.read_text().strip()


@main.group()
def ledger() -> None:
    """Reconcile the wallets' double-entry ledger."""


@ledger.command("check")
@DATA_DIR
@DATABASE_URL
def ledger_check(**flags: Any) -> None:
    """Check every ledger invariant; exit 1 listing each breach."""
    from gateway.db import Database
    from wallet.check import check

    settings = settings_from(**flags)
    db = Database(settings.resolved_database_url())
    with db.snapshot() as conn:
        breaches = check(conn)
    for breach in breaches:
        click.echo(f"BREACH {breach}", err=True)
    if breaches:
        sys.exit(1)
    click.echo("ledger reconciled: every invariant holds")


if __name__ == "__main__":  # pragma: no cover
    main()
