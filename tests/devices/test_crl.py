"""CRLs of the device issuing CA: number, dates, entries, and openssl refusing what they list."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes

from devices import ca
from devices.crl import build_crl
from tests.support.openssl import openssl, openssl_csr, openssl_ok, write_pem
from tests.support.pki import TRUST_DOMAIN, Authorities


def test_crl_carries_number_dates_entries_and_authority_key_id(
    authorities: Authorities, now: datetime
) -> None:
    issuing = authorities.device_issuing
    revoked = [(0x1234, now - timedelta(hours=1)), (2**158 + 7, now)]
    crl = build_crl(issuing, revoked, crl_number=17, now=now)

    assert crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number == 17
    assert crl.next_update_utc == now + timedelta(days=7)
    assert crl.last_update_utc == now - timedelta(minutes=5)
    assert crl.issuer == issuing.certificate.subject
    assert [(entry.serial_number, entry.revocation_date_utc) for entry in crl] == revoked
    issuer_key_id = issuing.certificate.extensions.get_extension_for_class(
        x509.SubjectKeyIdentifier
    ).value.digest
    aki = crl.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == issuer_key_id
    assert crl.is_signature_valid(issuing.private_key.public_key())
    assert isinstance(crl.signature_hash_algorithm, hashes.SHA256)


def test_crl_takes_next_update_when_given(authorities: Authorities, now: datetime) -> None:
    crl = build_crl(authorities.device_issuing, [], 1, now, next_update=now + timedelta(hours=2))
    assert crl.next_update_utc == now + timedelta(hours=2)
    assert len(crl) == 0


def test_openssl_refuses_revoked_device_and_accepts_the_others(
    tmp_path: Path, authorities: Authorities, now: datetime
) -> None:
    issuing = authorities.device_issuing
    csr = ca.load_csr(openssl_csr(tmp_path, "p256"))
    revoked = ca.issue_device_certificate(issuing, csr, "dev_revoked", TRUST_DOMAIN, now)
    kept = ca.issue_device_certificate(issuing, csr, "dev_kept", TRUST_DOMAIN, now)
    crl = build_crl(issuing, [(revoked.serial_number, now)], crl_number=1, now=now)
    cafile = write_pem(
        tmp_path / "cafile.pem", authorities.device_root.certificate, issuing.certificate
    )
    crl_path = write_pem(tmp_path / "device.crl", crl)
    check = ("verify", "-x509_strict", "-crl_check", "-CAfile", cafile, "-CRLfile", crl_path)

    openssl_ok(*check, write_pem(tmp_path / "kept.pem", kept))
    result = openssl(*check, write_pem(tmp_path / "revoked.pem", revoked))
    assert result.returncode != 0
    assert "certificate revoked" in result.stdout + result.stderr
