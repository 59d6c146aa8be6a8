"""`kym retire-worker`: take a gateway worker identity out of service without losing its orders.

Mosquitto keeps dealing an offline persistent member of the shared group its turn for as long
as its session lives (docs/durability.md): a deployment that runs fewer workers than before
leaves orders with identities nobody runs. This decides what the broker holds for one of them
and takes it out of the group (`gateway.mqtt.retire.retire_identity`).
"""

from __future__ import annotations

import sys
from typing import Any

import click

from gateway.cli_checks import DATA_DIR, DATABASE_URL, fail, settings_from


@click.command(
    "retire-worker",
    short_help="Drain the orders of a gateway identity no longer run.",
    epilog="Reads KYM_DATA_DIR, KYM_DATABASE_URL and KYM_BROKER_URL (a flag wins over its "
    "variable). Example, after going from `kym serve --workers 2` to `--workers 1` on a "
    "shared broker:\n\n\b\n  kym retire-worker --data-dir DIR --worker-index 1 \\\n"
    "    --broker-url mqtts://broker.example:8883",
)
@DATA_DIR
@DATABASE_URL
@click.option(
    "--broker-url",
    default=None,
    metavar="mqtts://HOST:PORT",
    help="The broker the gateway workers share [env KYM_BROKER_URL; required].",
)
@click.option(
    "--worker-index",
    "worker_index",
    type=click.IntRange(0, 15),
    required=True,
    help="n of the identity kym-gateway-<n> to retire. No running `kym serve` may use it.",
)
@click.option(
    "--idle",
    "idle_s",
    type=click.FloatRange(min=0.1),
    default=2.0,
    show_default=True,
    help="Seconds without a message after which its queue counts as drained.",
)
@click.option(
    "--timeout",
    "timeout_s",
    type=click.FloatRange(min=1),
    default=600.0,
    show_default=True,
    help="Give up after this many seconds; what is left stays with the broker.",
)
def retire_worker(worker_index: int, idle_s: float, timeout_s: float, **flags: Any) -> None:
    """Decide every order the broker holds for gateway identity kym-gateway-<n> and take it
    out of the orders' share group, so that nothing more is dealt to it.

    For a deployment that runs fewer gateway workers than before, behind a broker that outlives
    them (--broker-url): stop the `kym serve` that ran the identity, then retire it. Exit 0
    when its queue is drained, 1 when it could not be within --timeout (the database away, say:
    run it again), 2 when it could not start (no broker, bad settings). Starting a `kym serve`
    with that index later makes it a member again."""
    from gateway.mqtt.retire import retire_identity
    from gateway.server import broker_address, build_context

    settings = settings_from(**flags)
    if not (settings.data_dir / "ca").is_dir():
        fail(
            f"no gateway data dir at {settings.data_dir} (give the --data-dir that the "
            "`kym serve` processes use: its CAs hold the workers' identities)"
        )
    if not settings.broker_url:
        fail(
            "give the shared broker with --broker-url (or KYM_BROKER_URL): the broker that "
            "`kym serve` runs itself is stopped with it, and a restarted `kym serve` with fewer "
            "--workers leaves the others' orders there"
        )
    try:
        address = broker_address(settings)
    except ValueError as exc:
        fail(str(exc))
    identity = f"kym-gateway-{worker_index}"
    ctx = build_context(settings)
    try:
        click.echo(f"retiring {identity} at {address.host}:{address.port} ...", err=True)
        decided = retire_identity(
            ctx, address.host, address.port, worker_index, idle_s=idle_s, timeout_s=timeout_s
        )
    except TimeoutError as exc:
        click.echo(f"kym: {exc}", err=True)
        sys.exit(1)
    except RuntimeError as exc:
        fail(f"{exc}: is the broker at {address.host}:{address.port} up, and is it one "
             "configured by `kym mosquitto-config` for this data dir?")  # fmt: skip
    finally:
        ctx.db.dispose()
    click.echo(
        f"{identity} retired: decided the {decided} orders the broker held for it; nothing "
        "more is dealt to it"
    )
