"""After a rotation, the first order the new certificate signs retires the old one for the
broker too: it goes into the CRL (superseded), so a leaked old key no longer opens a session
as the device, reads its results or pushes its live session off."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from devices import wire
from devices.contract import results_topic
from tests.support.openssl import make_openssl_csr
from tests.support.stack import BROKERS, Session, Stack, run_stack


@pytest.fixture(params=BROKERS)
def stack(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Stack]:
    yield from run_stack(request, tmp_path, pipeline=True)


def test_the_first_use_of_a_rotated_in_certificate_puts_the_old_one_in_the_crl(
    stack: Stack,
) -> None:
    car = stack.device("car")
    old = car.connect()
    assert old.is_up  # the first certificate opens a session, as it should
    old.close()
    key_path, csr = make_openssl_csr(stack.tmp, "car-new")
    rotated = stack.api.post(
        f"/v1/devices/{car.id}/certificates",
        json={"csr": csr},
        headers={"Authorization": f"Bearer {car.integrator_key}"},
    )
    assert rotated.status_code == 201, rotated.text
    new_cert = stack.tmp / "car-new.crt"
    new_cert.write_text(rotated.json()["certificate"])
    live = Session.open(stack, new_cert, key_path, car.id)
    assert live.is_up and live.subscribe(results_topic(car.id))
    key = serialization.load_pem_private_key(key_path.read_bytes(), None)
    order = {
        **{"v": 1, "order_id": "o-new", "device_id": car.id, "ts": int(time.time()), "nonce": "n"},
        **{"type": "pay", "payee": "mer_nobody", "amount": 1, "currency": "EUR"},
    }  # any order the new key signs: its decision does not matter here
    live.publish(f"kym/v1/devices/{car.id}/orders", wire.sign(order, key).encode())  # type: ignore[arg-type]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not live.messages:
        time.sleep(0.05)
    assert live.messages, "the new certificate's order got no result"
    old_serial = x509.load_pem_x509_certificate(car.cert.read_bytes()).serial_number
    crl = x509.load_pem_x509_crl(stack.api.get("/v1/ca/crl").content)
    assert crl.get_revoked_certificate_by_serial_number(old_serial) is not None
    deadline = time.monotonic() + 5  # the broker reloads the CRL it was given
    while time.monotonic() < deadline:
        again = car.connect()
        refused = not again.is_up
        again.close()
        if refused:
            break
        time.sleep(0.2)
    assert refused, "the superseded certificate still opens a session as the device"
    time.sleep(0.5)
    assert live.is_up  # the device's own session, with its new certificate, stands
    live.close()
