"""`kym device`: a device's life from the command line, built on the device SDK.

    keygen    make a key and a CSR in the state dir (or bring your own from openssl)
    register  register the key as the integrator (POST /v1/devices) and store the identity
    pay/hold  sign, journal and send an order as the device; print the verified result
    capture/void/refund  the same as the payee of a payment
    sign      print a signed order without sending it (for mosquitto_rr and friends)
    listen    print every verified result and event addressed to the device

Everything a device has lives in its state dir (`devices.sdk.identity`), plus
`endpoints.json`: the API and broker addresses given at registration, used from then on.
`registration` holds keygen and register, `payee` capture, void and refund, `orders` the
rest, `options` what they share.
"""

from __future__ import annotations

import logging

import click

from devices.sdk.commands import orders, payee, registration


@click.group(short_help="Be a device: key, registration, orders and results.")
def device() -> None:
    """Be a device: make a key, register it, pay and listen, over the device SDK.

    Reads KYM_DEVICE_DIR, KYM_API_URL, KYM_API_KEY, KYM_API_CA and KYM_DEVICE_BROKER_URL.
    """
    if not click.get_current_context().find_root().params.get("verbose"):
        logging.getLogger("kym.sdk").setLevel(logging.WARNING)  # the commands say what matters


for command in (
    registration.keygen,
    registration.register,
    orders.pay,
    orders.hold,
    payee.capture,
    payee.void,
    payee.refund,
    orders.sign,
    orders.listen,
):
    device.add_command(command)
