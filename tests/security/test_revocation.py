"""Revocation and suspension hold in the gateway itself, whatever the broker does (with an
external broker, only the gateway's refusal is guaranteed: CONTRACT.md section 3). Orders go
straight to the gateway's decision, as they would through a broker that still lets the device in.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.seeded import seeded_gateway


@pytest.mark.parametrize("action", ["revoke", "suspend"])
def test_an_order_after_revocation_or_suspension_moves_no_money(
    tmp_path: Path, action: str
) -> None:
    with seeded_gateway(tmp_path) as gateway:
        alice, shop = gateway.devices["alice"], gateway.ids["merchant"]
        assert alice.act(action).status_code == 200
        before = alice.wallet()
        result = alice.send(alice.order(type="pay", payee=shop, amount=10, currency="EUR"))
        assert result["status"] in ("declined", "rejected"), result
        assert result["payment_id"] is None
        if action == "suspend":
            assert result["reason"] == "device_not_active", result
        assert alice.wallet() == before


def test_a_revoked_device_is_in_the_crl(tmp_path: Path) -> None:
    from cryptography import x509

    with seeded_gateway(tmp_path) as gateway:
        alice = gateway.devices["alice"]
        serial = gateway.api.get(f"/v1/devices/{alice.id}", headers=alice.owner).json()
        assert alice.act("revoke").status_code == 200
        crl = x509.load_pem_x509_crl(gateway.api.get("/v1/ca/crl").content)
        revoked = {format(entry.serial_number, "x") for entry in crl}
        assert serial["certificate_serial"] in revoked
