"""The migration that binds each public key to one device, on a database that holds certificates
issued before it (SQLite and PostgreSQL): every key is bound to the device whose certificate
first held it, a key already on two devices does not stop the migration, and from then on the
gateway refuses to make a bound key another device's identity."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from sqlalchemy import text

from devices import ca
from devices import store as device_store
from devices.registry import Device, DeviceCertificate, Status
from gateway import service
from gateway import store as party_store
from gateway.db import Database
from gateway.errors import REFUSAL_TYPES, refusal_of
from gateway.parties import Party
from gateway.server import build_context
from gateway.settings import Settings
from tests.support.gateway import ADMIN_TOKEN
from tests.support.migrations import upgrade_to
from tests.support.pki import TRUST_DOMAIN, make_authorities
from tests.support.services import postgres_schema_url

BEFORE = "0018_events_nearly_index"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
DeviceKey = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database with no tables yet, for migrating step by step."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'old.db'}"
    return postgres_schema_url(request.getfixturevalue("postgres_database"))


def csr_of(key: DeviceKey) -> x509.CertificateSigningRequest:
    subject = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "device")])
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    return x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, algorithm)


def fingerprint(key: DeviceKey) -> str:
    """SHA-256 of the key's SubjectPublicKeyInfo, lowercase hex, computed here independently."""
    spki = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(spki)
    return digest.finalize().hex()


def test_the_migration_binds_each_existing_key_to_the_device_that_held_it_first(
    empty_database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    url = empty_database_url
    upgrade_to(url, BEFORE)
    shared, b_old, b_new = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    edwards = ed25519.Ed25519PrivateKey.generate()
    # (device, key, days after T0 it was issued), in the order the rows are written: the copy
    # of a's key on c was issued after a's first certificate but written before it
    issued: list[tuple[str, DeviceKey, int]] = [
        ("dev_c", shared, 5),
        ("dev_a", shared, 0),
        ("dev_a", shared, 40),  # a same-key renewal
        ("dev_b", b_old, 1),
        ("dev_b", b_new, 30),  # a rotation: both keys are b's
        ("dev_d", edwards, 2),
    ]
    _write_devices_and_certificates(url, issued)

    with caplog.at_level(logging.WARNING):
        db = Database(url)
        db.migrate()
    with db.read() as conn:
        rows = conn.execute(text("SELECT fingerprint, device_id FROM device_keys")).all()
    db.dispose()
    assert dict(rows) == {
        fingerprint(shared): "dev_a",
        fingerprint(b_old): "dev_b",
        fingerprint(b_new): "dev_b",
        fingerprint(edwards): "dev_d",
    }
    warned = " ".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)
    assert "dev_c" in warned and "dev_a" in warned

    settings = Settings(data_dir=tmp_path / "data", database_url=url, admin_token=ADMIN_TOKEN)
    ctx = build_context(settings)
    integrator = Party("integrator", "int_1")
    try:
        for key in (shared, b_old, b_new, edwards):
            csr = csr_of(key).public_bytes(serialization.Encoding.PEM).decode()
            reg = service.Registration("own_1", "car", "ACME", "M1", "SN-new", csr)
            with pytest.raises(REFUSAL_TYPES) as refused:
                service.register_device(ctx, integrator, reg)
            assert refusal_of(refused.value) == (409, "device_exists")
        pem = csr_of(shared).public_bytes(serialization.Encoding.PEM).decode()
        service.rotate_certificate(ctx, integrator, "dev_a", pem)  # its own key: renewed
        with pytest.raises(REFUSAL_TYPES) as refused:
            service.rotate_certificate(ctx, integrator, "dev_c", pem)
        assert refusal_of(refused.value) == (409, "device_exists")
    finally:
        ctx.db.dispose()


def _write_devices_and_certificates(url: str, issued: list[tuple[str, DeviceKey, int]]) -> None:
    """Parties, devices and their certificates as the gateway wrote them before the migration."""
    authorities = make_authorities(T0 - timedelta(days=1))
    db = Database(url)
    with db.transaction() as conn:
        party_store.insert_party(
            conn, "owner", {"id": "own_1", "name": "Ada", "timezone": "UTC", "created_at": T0}
        )
        party_store.insert_party(
            conn, "integrator", {"id": "int_1", "name": "Bosch", "created_at": T0}
        )
        for device_id in sorted({device_id for device_id, _, _ in issued}):
            device_store.insert_device(conn, _device(device_id))
        for device_id, key, days in issued:
            at = T0 + timedelta(days=days)
            certificate = ca.issue_device_certificate(
                authorities.device_issuing, ca.load_csr(_pem(key)), device_id, TRUST_DOMAIN, at
            )
            device_store.insert_certificate(conn, _record(device_id, certificate, at))
    db.dispose()


def _device(device_id: str) -> Device:
    return Device(
        id=device_id,
        owner_id="own_1",
        integrator_id="int_1",
        kind="car",
        manufacturer="ACME",
        model="M1",
        serial_number=f"SN-{device_id}",
        currency="EUR",
        category=None,
        status=Status.ACTIVE,
        attested=False,
        created_at=T0,
    )


def _record(device_id: str, certificate: x509.Certificate, at: datetime) -> DeviceCertificate:
    return DeviceCertificate(
        serial=format(certificate.serial_number, "x"),
        device_id=device_id,
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode(),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        issued_at=at,
        first_used_at=None,
        revoked_at=None,
    )


def _pem(key: DeviceKey) -> bytes:
    return csr_of(key).public_bytes(serialization.Encoding.PEM)
