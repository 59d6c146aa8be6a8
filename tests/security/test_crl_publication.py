"""Two revocations at once: the CRL served afterwards is the later one and lists both devices,
whichever publication took its number first (contract section 3: a revoked device's
certificate "appears in GET /v1/ca/crl" once the call returns)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from fastapi.testclient import TestClient

from devices import keystore
from gateway.context import Context
from gateway.http.app import create_app
from tests.support.gateway import bearer, create, register
from tests.support.openssl import make_openssl_csr


def _number(crl: x509.CertificateRevocationList) -> int:
    return crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number


def test_a_crl_numbered_first_never_lands_over_a_later_one(
    ctx: Context, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    api = TestClient(create_app(ctx))
    owner = create(api, "owners", {"name": "Ada", "timezone": "UTC"})
    integrator = create(api, "integrators", {"name": "Bosch"})
    a, b = (
        register(api, integrator, owner["id"], make_openssl_csr(tmp_path, n)[1], serial=n).json()
        for n in ("a", "b")
    )
    headers = bearer(owner["api_key"])
    written: list[x509.CertificateRevocationList] = []
    write = keystore.write_crl
    others: list[threading.Thread] = []

    def slow_first(pki: Any, crl: x509.CertificateRevocationList) -> None:
        written.append(crl)
        if len(written) == 1:  # a's publication, numbered: b is revoked while it writes
            revoke_b = threading.Thread(
                target=lambda: api.post(f"/v1/devices/{b['id']}/revoke", headers=headers)
            )
            revoke_b.start()
            others.append(revoke_b)
            time.sleep(0.5)  # time enough for b's publication to overtake, were it let
        write(pki, crl)

    monkeypatch.setattr(keystore, "write_crl", slow_first)  # as gateway.service calls it
    assert api.post(f"/v1/devices/{a['id']}/revoke", headers=headers).status_code == 200
    for thread in others:
        thread.join(10)
    served = x509.load_pem_x509_crl(api.get("/v1/ca/crl").content)
    assert _number(served) == max(_number(crl) for crl in written) == 2
    for device in (a, b):
        shown = api.get(f"/v1/devices/{device['id']}", headers=headers).json()
        assert shown["status"] == "revoked"
        serial = int(shown["certificate_serial"], 16)
        assert served.get_revoked_certificate_by_serial_number(serial) is not None, device["id"]
