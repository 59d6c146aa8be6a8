"""`kym simulate` and `kym bench`: simulated devices against a gateway.

Registered by `gateway.cli` (the only gateway module that imports `simulators`). `simulate`
talks to a running gateway over HTTP and MQTT only; `bench` starts one with the command the
CLI hands it (`kym serve`), so that nothing here imports the gateway.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import click


@click.command(short_help="Run simulated devices against a running gateway.")
@click.option(
    "--devices",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Paying devices (cars, fridges, smart meters, one misbehaving from 5 on); "
    "stations for the cars come on top.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    help="Arrivals per second, on a fixed schedule whatever the answers (open loop).",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    default=10.0,
    show_default=True,
    metavar="SECONDS",
    help="Seconds of arrivals; answers then get up to --settle seconds more.",
)
@click.option(
    "--settle", type=click.FloatRange(min=0), default=10.0, show_default=True, metavar="SECONDS"
)
@click.option(
    "--api",
    envvar="KYM_API_URL",
    default="http://127.0.0.1:8080",
    show_default=True,
    metavar="URL",
    help="The gateway's HTTP API [env KYM_API_URL].",
)
@click.option(
    "--broker-url",
    envvar="KYM_DEVICE_BROKER_URL",
    default="mqtts://127.0.0.1:8883",
    show_default=True,
    metavar="mqtts://HOST:PORT",
    help="The broker the devices connect to [env KYM_DEVICE_BROKER_URL].",
)
@click.option(
    "--admin-token",
    default=None,
    envvar="KYM_ADMIN_TOKEN",
    help="[env KYM_ADMIN_TOKEN; default: the admin-token file in --data-dir].",
)
@click.option(
    "--data-dir",
    envvar="KYM_DATA_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("./kym-data"),
    help="The gateway's data dir, for its admin-token file [env KYM_DATA_DIR; ./kym-data].",
)
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
    data_dir: Path,
    state_dir: Path | None,
    seed: int,
) -> None:
    """Run a population of simulated devices against a running gateway; print what it saw.

    \b
    Example (beside a `kym serve --data-dir ./kym-data` on the default addresses):
      kym simulate --devices 10 --rate 5 --duration 30
    """
    import tempfile

    import httpx

    from devices.sdk import ApiError, ConnectFailed
    from simulators.population import run_population

    token = admin_token or admin_token_file(data_dir)
    host, port = broker_address(broker_url, "--broker-url")
    if state_dir is not None and state_dir.exists() and any(state_dir.iterdir()):
        raise click.BadParameter(f"{state_dir} is not empty", param_hint="--state-dir")
    with tempfile.TemporaryDirectory(prefix="kym-simulate-") as tmp:
        fleet_dir = state_dir or Path(tmp) / "fleet"
        try:
            summary = run_population(
                api,
                host,
                port,
                token,
                devices,
                rate,
                duration,
                fleet_dir,
                seed=seed,
                settle_s=settle,
            )
        except ApiError as exc:
            raise click.ClickException(f"the gateway at {api} refused: {exc}") from exc
        except httpx.HTTPError as exc:
            raise click.ClickException(f"cannot reach the gateway at {api}: {exc}") from exc
        except ConnectFailed as exc:
            raise click.ClickException(
                f"{exc} (give --broker-url, or KYM_DEVICE_BROKER_URL, the broker of the "
                f"gateway at {api})"
            ) from exc
    click.echo(summary.render())
    if summary.surprises or summary.dropped or summary.unanswered:
        sys.exit(1)


def admin_token_file(data_dir: Path) -> str:
    path = data_dir / "admin-token"
    if not path.is_file():
        raise click.UsageError(
            f"no admin token: pass --admin-token, set KYM_ADMIN_TOKEN or "
            f"point --data-dir at the gateway's data dir (no {path})"
        )
    return path.read_text().strip()


def broker_address(url: str, flag: str) -> tuple[str, int]:
    """HOST and PORT of `mqtts://HOST:PORT` (8883 when no port)."""
    from urllib.parse import urlsplit

    broker = urlsplit(url)
    if broker.scheme not in ("mqtts", "ssl", "tls") or not broker.hostname:
        raise click.BadParameter("must look like mqtts://HOST:PORT", param_hint=flag)
    return broker.hostname, broker.port or 8883


BENCH_OPTIONS = [
    click.option(
        "--devices",
        type=click.IntRange(min=1),
        default=20,
        show_default=True,
        help="Simulated devices.",
    ),
    click.option(
        "--orders",
        type=click.IntRange(min=1),
        default=5000,
        show_default=True,
        help="Orders in all.",
    ),
    click.option(
        "--rate",
        type=click.FloatRange(min=0, min_open=True),
        default=None,
        help="Orders per second [flat out].",
    ),
    click.option(
        "--database-url",
        envvar="KYM_DATABASE_URL",
        default=None,
        metavar="URL",
        help="The gateway's database [env KYM_DATABASE_URL; default SQLite in a temp dir].",
    ),
    click.option(
        "--broker",
        type=click.Choice(["auto", "mosquitto", "embedded"]),
        default="auto",
        show_default=True,
    ),
    click.option(
        "--key-type", type=click.Choice(["p256", "ed25519"]), default="p256", show_default=True
    ),
    click.option(
        "--workers",
        type=click.IntRange(1, 16),
        default=1,
        show_default=True,
        help="Gateway processes sharing the broker's subscription and the database.",
    ),
    click.option(
        "--connected",
        type=click.IntRange(0, 100_000),
        default=0,
        show_default=True,
        help="Idle devices holding mutual-TLS connections while the others pay.",
    ),
    click.option("--json", "as_json", is_flag=True, help="Print the numbers as one JSON line."),
    click.option(
        "--latencies",
        type=click.Path(dir_okay=False, writable=True, path_type=Path),
        default=None,
        help="Also write every order's send time and latency to this CSV file "
        "(seconds from the first order, milliseconds): where in the run the slow ones were.",
    ),
]


FRESH_FOR_S = 300  # an order older than this is `stale_order` (contract, section 6)
# What an open-loop run may take to send, signed up front: the freshness window less the time
# that registering, signing and connecting take before the first order goes out.
SENDING_WITHIN_S = 240


def bench_command(serve_command: Sequence[str]) -> click.Command:
    """`kym bench`, starting its gateway with `serve_command`."""

    def bench(
        devices: int,
        orders: int,
        rate: float | None,
        database_url: str | None,
        broker: str,
        key_type: str,
        workers: int,
        connected: int,
        as_json: bool,
        latencies: Path | None,
    ) -> None:
        """Measure payments per second end to end: devices → broker → gateway → ledger → results.

        Starts `kym serve` in a child process on a temp dir; other KYM_* variables do not
        reach it. It prints throughput and latency percentiles when the orders are answered.

        \b
        Example:
          kym bench --orders 500
        """
        from rich.console import Console

        from simulators.bench.load import Load
        from simulators.bench.report import print_report
        from simulators.bench.run import run_bench

        if rate is not None and orders / rate > SENDING_WITHIN_S:
            most = int(rate * SENDING_WITHIN_S)
            raise click.UsageError(
                f"--orders {orders} at --rate {rate:g} takes {orders / rate:.0f} s to send, but "
                f"every order is signed before the clock starts and the gateway refuses one "
                f"older than {FRESH_FOR_S} s as stale_order: at this rate give at most "
                f"--orders {most}, or a higher --rate"
            )
        console = Console(stderr=as_json)
        unused = unused_settings(os.environ)
        if unused:
            console.print(
                f"[yellow]not passed to the gateway it starts: {', '.join(unused)}[/] (kym "
                "bench measures `kym serve` with its own settings; to measure others, change "
                "their defaults in gateway/settings.py)"
            )
        load = Load(devices, orders, rate, "ed25519" if key_type == "ed25519" else "p256")
        report = run_bench(
            serve_command,
            load,
            console,
            database_url=database_url,
            broker=broker,
            workers=workers,
            connected=connected,
        )
        shown_db = _hide_password(database_url) if database_url else "SQLite"
        label = f"{devices} devices, {key_type}, {broker} broker, {shown_db}"
        print_report(report, label, console)
        if latencies is not None:
            report.write_timeline(latencies)
            console.print(f"latencies of {len(report.timeline)} orders written to {latencies}")
        if as_json:
            click.echo(report.to_json())
        if not report.complete:
            sys.exit(1)

    for option in reversed(BENCH_OPTIONS):
        bench = option(bench)
    return click.command(name="bench", short_help="Measure payments per second, end to end.")(bench)


def unused_settings(environ: Mapping[str, str]) -> list[str]:
    """The caller's KYM_* variables that `kym bench` does not hand to the gateway it starts
    (only --database-url is read from the environment, as KYM_DATABASE_URL): a measurement
    taken with KYM_CRYPTO_HELPERS=false would otherwise silently measure the defaults."""
    return sorted(k for k in environ if k.startswith("KYM_") and k != "KYM_DATABASE_URL")


def _hide_password(url: str) -> str:
    """A database URL fit to print: its password, if any, as ***."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    user, _, host = parts.netloc.rpartition("@")
    return parts._replace(netloc=f"{user.partition(':')[0]}:***@{host}").geturl()
