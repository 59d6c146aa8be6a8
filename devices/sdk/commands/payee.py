"""`kym device capture`, `void` and `refund`: the payee's side of a payment, as a pump or a
charger would send it (the payment id comes from its `hold_placed` or `payment_received`)."""

from __future__ import annotations

from pathlib import Path

import click

from devices.sdk import messages
from devices.sdk.commands.options import BROKER_URL, STATE_DIR, TIMEOUT
from devices.sdk.commands.orders import send_and_show

PAYMENT_ID = click.argument("payment_id")
AMOUNT = click.argument("amount", type=click.IntRange(min=1))


@click.command(short_help="Take AMOUNT of the hold PAYMENT_ID (a payee's order).")
@STATE_DIR
@BROKER_URL
@TIMEOUT
@PAYMENT_ID
@AMOUNT
def capture(
    state_dir: Path, broker_url: str | None, timeout_s: float, payment_id: str, amount: int
) -> None:
    """Take AMOUNT (minor units, up to what is held) of the hold PAYMENT_ID; the rest goes
    back to the payer. Exit 0 when captured, 1 when refused, 2 when no answer came."""
    fields = messages.capture_fields(payment_id, amount)
    send_and_show(state_dir, broker_url, fields, timeout_s)


@click.command()
@STATE_DIR
@BROKER_URL
@TIMEOUT
@PAYMENT_ID
def void(state_dir: Path, broker_url: str | None, timeout_s: float, payment_id: str) -> None:
    """Release the whole hold PAYMENT_ID. Exit 0 when voided, 1 when refused, 2 when no
    answer came."""
    send_and_show(state_dir, broker_url, messages.void_fields(payment_id), timeout_s)


@click.command()
@STATE_DIR
@BROKER_URL
@TIMEOUT
@PAYMENT_ID
@AMOUNT
def refund(
    state_dir: Path, broker_url: str | None, timeout_s: float, payment_id: str, amount: int
) -> None:
    """Give back AMOUNT (minor units) of the payment PAYMENT_ID. Exit 0 when refunded, 1 when
    refused, 2 when no answer came."""
    fields = messages.refund_fields(payment_id, amount)
    send_and_show(state_dir, broker_url, fields, timeout_s)
