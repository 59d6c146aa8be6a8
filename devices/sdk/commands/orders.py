"""`kym device pay`, `hold`, `sign` and `listen`: orders out, verified answers in."""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from devices import wire
from devices.sdk import messages
from devices.sdk.client import CONNECT_TIMEOUT_S, DeviceClient
from devices.sdk.commands.options import (
    BROKER_URL,
    SETTLED,
    STATE_DIR,
    TIMEOUT,
    Unable,
    broker_of,
    load_identity,
    split_broker,
)
from devices.sdk.errors import ResultTimeout, SdkError
from devices.sdk.identity import StatePaths
from devices.sdk.messages import Event, Result


@click.command(short_help="Pay AMOUNT (minor units) to PAYEE now.")
@STATE_DIR
@BROKER_URL
@TIMEOUT
@click.argument("payee")
@click.argument("amount", type=click.IntRange(min=1))
@click.option("--currency", default="EUR", show_default=True)
@click.option("--description", default=None)
def pay(
    state_dir: Path,
    broker_url: str | None,
    timeout_s: float,
    payee: str,
    amount: int,
    currency: str,
    description: str | None,
) -> None:
    """Pay AMOUNT (minor units: 450 is 4.50) to PAYEE now; print the verified result.

    Exit 0 when approved, 1 when declined or rejected, 2 when no answer came.
    """
    fields = messages.pay_fields(payee, amount, currency, description)
    send_and_show(state_dir, broker_url, fields, timeout_s)


@click.command(short_help="Reserve up to AMOUNT for PAYEE, to capture or void.")
@STATE_DIR
@BROKER_URL
@TIMEOUT
@click.argument("payee")
@click.argument("amount", type=click.IntRange(min=1))
@click.option("--currency", default="EUR", show_default=True)
@click.option(
    "--expires-in",
    "expires_in_s",
    type=click.IntRange(60, 86400),
    default=None,
    metavar="SECONDS",
    help="When the hold lapses unless captured [the gateway's default: 900].",
)
@click.option("--description", default=None)
def hold(
    state_dir: Path,
    broker_url: str | None,
    timeout_s: float,
    payee: str,
    amount: int,
    currency: str,
    expires_in_s: int | None,
    description: str | None,
) -> None:
    """Reserve up to AMOUNT (minor units) for PAYEE, who captures or voids it.

    Exit 0 when approved, 1 when declined or rejected, 2 when no answer came.
    """
    fields = messages.hold_fields(payee, amount, currency, expires_in_s, description)
    send_and_show(state_dir, broker_url, fields, timeout_s)


@click.command(short_help="Print a signed pay order without sending it.")
@STATE_DIR
@click.argument("payee")
@click.argument("amount", type=click.IntRange(min=1))
@click.option("--currency", default="EUR", show_default=True)
@click.option("--description", default=None)
def sign(state_dir: Path, payee: str, amount: int, currency: str, description: str | None) -> None:
    """Print a signed `pay` order (compact JWS) without sending or journaling it.

    For sending it yourself, e.g. with `mosquitto_rr -V 311 ... -m "$(kym device sign ...)"`;
    sending it again is safe (the gateway answers a replay with the first answer).
    """
    identity = load_identity(state_dir)
    client = DeviceClient(identity, "unused")  # never connected: it only signs
    try:
        with order_input():
            order = client.prepare(messages.pay_fields(payee, amount, currency, description))
    finally:
        client.close()
    click.echo(order.jws)


@click.command(short_help="Print every verified result and event for the device.")
@STATE_DIR
@BROKER_URL
@click.option("--count", type=int, default=None, help="Stop after this many messages.")
@click.option(
    "--timeout",
    "timeout_s",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Stop when nothing arrived for this long; also how long connecting may take "
    f"[listen until Ctrl-C; connecting: {CONNECT_TIMEOUT_S:g} s].",
)
def listen(
    state_dir: Path, broker_url: str | None, count: int | None, timeout_s: float | None
) -> None:
    """Print every verified result and event for the device, one JSON object a line.

    It holds the device's MQTT session (the client id is the certificate's identity): a
    second connection with the same certificate, such as `kym device pay`, ends it.
    """
    arrived = threading.Semaphore(0)

    def show(item: Result | Event) -> None:
        click.echo(json.dumps(item.payload, sort_keys=True))
        arrived.release()

    # The callbacks are in place before the session resumes: what waited there comes first.
    client = connected(
        state_dir,
        broker_url,
        CONNECT_TIMEOUT_S if timeout_s is None else timeout_s,
        on_result=show,
        on_event=show,
    )
    click.echo(f"{client.device_id} listening on {broker_url or broker_of(state_dir)}", err=True)
    seen = 0
    try:
        while count is None or seen < count:
            if not arrived.acquire(timeout=timeout_s):
                break
            seen += 1
    except KeyboardInterrupt:
        pass
    finally:
        client.close()


@contextmanager
def order_input() -> Iterator[None]:
    """An order the contract would refuse (a payee or amount out of its bounds, say) is the
    user's mistake: one line and exit 2, not a traceback."""
    try:
        yield
    except wire.InvalidMessage as exc:
        raise click.UsageError(f"not a valid order: {exc}") from exc


def send_and_show(
    state_dir: Path, broker_url: str | None, fields: dict[str, Any], timeout_s: float
) -> None:
    """Send one order; print its results as they come; exit by the final one. Connecting and
    the first answer share `timeout_s`; a pending approval gets `timeout_s` again."""
    deadline = time.monotonic() + timeout_s
    client = connected(state_dir, broker_url, timeout_s)
    try:
        with order_input():
            order_id = client.send(fields)
        click.echo(f"sent {fields['type']} order {order_id} (journaled in {state_dir}/)", err=True)
        result = first_result(client, order_id, deadline, timeout_s)
        if not result.is_final:
            if result.is_rate_limited:
                click.echo(f"{headline(result)}: over the device's rate; re-sending", err=True)
            else:
                click.echo(f"{result.status}: waiting for the owner to decide", err=True)
            result = client.wait_for_result(order_id, timeout_s, final=True)
    except SdkError as exc:
        raise Unable(f"{exc}; the order stays journaled and is re-sent next time") from exc
    finally:
        client.close()
    click.echo(
        f"{headline(result)} (signature verified with {StatePaths(state_dir).gateway_certificate})"
    )
    click.echo(json.dumps(result.payload, indent=2, sort_keys=True))
    sys.exit(0 if result.status in SETTLED else 1)


def first_result(client: DeviceClient, order_id: str, deadline: float, timeout_s: float) -> Result:
    """The order's first result, final or not, by `deadline` (what `--timeout` left)."""
    try:
        return client.wait_for_result(order_id, max(0.0, deadline - time.monotonic()), False)
    except ResultTimeout as exc:
        raise ResultTimeout(f"no result for {order_id} within --timeout {timeout_s:g} s") from exc


def headline(result: Result) -> str:
    """What a person reads first: the status, its reason, the payment."""
    words = [str(result.status), result.reason or ""]
    if result.payment_id:
        words.append(f"payment {result.payment_id}")
    return " ".join(word for word in words if word)


def connected(
    state_dir: Path, broker_url: str | None, timeout_s: float, **options: Any
) -> DeviceClient:
    """The device's SDK client (`options` as for DeviceClient), connected and subscribed within
    `timeout_s`."""
    host, port = split_broker(broker_url or broker_of(state_dir))
    client = DeviceClient(load_identity(state_dir), host, port, **options)
    try:
        client.connect(timeout_s)
    except SdkError as exc:
        client.close()
        raise Unable(f"cannot reach the broker at {host}:{port}: {exc}") from exc
    return client
