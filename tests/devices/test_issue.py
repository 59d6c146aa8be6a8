"""Issued certificates carry exactly the fields of the design and pass `openssl verify`."""

from __future__ import annotations

import ipaddress
import subprocess
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import ExtendedKeyUsageOID, ExtensionOID, NameOID
from cryptography.x509.verification import PolicyBuilder, Store

from devices import ca
from tests.support.openssl import openssl, openssl_csr, openssl_ok, write_pem
from tests.support.pki import TRUST_DOMAIN, Authorities

LEAF_EXTENSIONS = {
    ExtensionOID.BASIC_CONSTRAINTS,
    ExtensionOID.KEY_USAGE,
    ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
    ExtensionOID.EXTENDED_KEY_USAGE,
    ExtensionOID.SUBJECT_KEY_IDENTIFIER,
    ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
}


E = TypeVar("E", bound=x509.ExtensionType)


def extension(certificate: x509.Certificate, kind: type[E]) -> x509.Extension[E]:
    return certificate.extensions.get_extension_for_class(kind)


def only_digital_signature(usage: x509.KeyUsage) -> bool:
    others = [
        usage.content_commitment,
        usage.key_encipherment,
        usage.data_encipherment,
        usage.key_agreement,
        usage.key_cert_sign,
        usage.crl_sign,
    ]
    return usage.digital_signature and not any(others)


def strict_verify(
    workdir: Path, leaf: x509.Certificate, authorities: Authorities, *args: str
) -> subprocess.CompletedProcess[str]:
    root = write_pem(workdir / "root.pem", authorities.device_root.certificate)
    issuing = write_pem(workdir / "issuing.pem", authorities.device_issuing.certificate)
    leaf_path = write_pem(workdir / "leaf.pem", leaf)
    return openssl(
        "verify", "-x509_strict", "-CAfile", root, "-untrusted", issuing, *args, leaf_path
    )


@pytest.mark.parametrize("algorithm", ["p256", "ed25519"])
def test_device_certificate_from_openssl_csr_passes_strict_openssl_verify(
    tmp_path: Path, authorities: Authorities, now: datetime, algorithm: str
) -> None:
    csr = ca.load_csr(openssl_csr(tmp_path, algorithm))
    cert = ca.issue_device_certificate(authorities.device_issuing, csr, "dev_1", TRUST_DOMAIN, now)
    result = strict_verify(tmp_path, cert, authorities, "-purpose", "sslclient")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("algorithm", ["p256", "ed25519"])
def test_device_certificate_has_exactly_the_designed_fields(
    tmp_path: Path, authorities: Authorities, now: datetime, algorithm: str
) -> None:
    csr = ca.load_csr(openssl_csr(tmp_path, algorithm, subject="/CN=evil/O=Mallory"))
    issuing = authorities.device_issuing
    cert = ca.issue_device_certificate(issuing, csr, "dev_1.a-B", TRUST_DOMAIN, now)

    assert cert.subject == x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "dev_1.a-B")])
    assert cert.issuer == issuing.certificate.subject
    assert {ext.oid for ext in cert.extensions} == LEAF_EXTENSIONS
    san = extension(cert, x509.SubjectAlternativeName)
    assert list(san.value) == [
        x509.UniformResourceIdentifier(f"spiffe://{TRUST_DOMAIN}/device/dev_1.a-B")
    ]
    assert list(extension(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    usage = extension(cert, x509.KeyUsage)
    assert usage.critical and only_digital_signature(usage.value)
    constraints = extension(cert, x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca is False
    assert cert.public_key() == csr.public_key()
    assert cert.not_valid_before_utc == now - timedelta(minutes=5)
    assert cert.not_valid_after_utc == now + timedelta(days=90)
    assert 0 < cert.serial_number < 2**159
    assert isinstance(cert.signature_hash_algorithm, hashes.SHA256)
    issuer_key_id = extension(issuing.certificate, x509.SubjectKeyIdentifier).value.digest
    assert extension(cert, x509.AuthorityKeyIdentifier).value.key_identifier == issuer_key_id


def test_device_certificate_passes_cryptography_client_verifier_with_default_policy(
    tmp_path: Path, authorities: Authorities, now: datetime
) -> None:
    csr = ca.load_csr(openssl_csr(tmp_path, "p256"))
    cert = ca.issue_device_certificate(authorities.device_issuing, csr, "dev_1", TRUST_DOMAIN, now)
    verifier = (
        PolicyBuilder()
        .store(Store([authorities.device_root.certificate]))
        .time(now)
        .build_client_verifier()
    )
    verified = verifier.verify(cert, [authorities.device_issuing.certificate])
    assert verified.subjects == [
        x509.UniformResourceIdentifier(f"spiffe://{TRUST_DOMAIN}/device/dev_1")
    ]


def test_device_certificate_takes_serial_and_validity_when_given(
    tmp_path: Path, authorities: Authorities, now: datetime
) -> None:
    csr = ca.load_csr(openssl_csr(tmp_path, "p256"))
    cert = ca.issue_device_certificate(
        authorities.device_issuing, csr, "dev_1", TRUST_DOMAIN, now, validity_days=7, serial=42
    )
    assert cert.serial_number == 42
    assert cert.not_valid_after_utc == now + timedelta(days=7)


def test_serials_are_random_and_distinct(
    tmp_path: Path, authorities: Authorities, now: datetime
) -> None:
    csr = ca.load_csr(openssl_csr(tmp_path, "p256"))
    serials = {
        ca.issue_device_certificate(
            authorities.device_issuing, csr, "dev_1", TRUST_DOMAIN, now
        ).serial_number
        for _ in range(20)
    }
    assert len(serials) == 20


def test_gateway_client_certificate_is_a_client_of_the_device_issuing_ca(
    tmp_path: Path, authorities: Authorities, now: datetime
) -> None:
    key = ca.new_private_key()
    cert = ca.issue_gateway_client_certificate(
        authorities.device_issuing, key.public_key(), 3, TRUST_DOMAIN, now
    )
    assert cert.subject.rfc4514_string() == "CN=kym-gateway-3"
    assert list(extension(cert, x509.SubjectAlternativeName).value) == [
        x509.UniformResourceIdentifier(f"spiffe://{TRUST_DOMAIN}/gateway/3")
    ]
    assert list(extension(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert {ext.oid for ext in cert.extensions} == LEAF_EXTENSIONS
    result = strict_verify(tmp_path, cert, authorities, "-purpose", "sslclient")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("host", "san", "check"),
    [
        ("127.0.0.1", x509.IPAddress(ipaddress.ip_address("127.0.0.1")), "-verify_ip"),
        ("[::1]", x509.IPAddress(ipaddress.ip_address("::1")), "-verify_ip"),
        ("broker.example", x509.DNSName("broker.example"), "-verify_hostname"),
        ("localhost", x509.DNSName("localhost"), "-verify_hostname"),
    ],
)
def test_server_certificate_names_the_host(
    tmp_path: Path,
    authorities: Authorities,
    now: datetime,
    host: str,
    san: x509.GeneralName,
    check: str,
) -> None:
    cert = ca.issue_server_certificate(
        authorities.service_root, ca.new_private_key().public_key(), host, now
    )
    assert list(extension(cert, x509.SubjectAlternativeName).value) == [san]
    assert list(extension(cert, x509.ExtendedKeyUsage).value) == [ExtendedKeyUsageOID.SERVER_AUTH]
    root = write_pem(tmp_path / "service-root.pem", authorities.service_root.certificate)
    leaf = write_pem(tmp_path / "server.pem", cert)
    name = host.strip("[]")
    openssl_ok(
        "verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", root, check, name, leaf
    )
    wrong = "10.9.9.9" if check == "-verify_ip" else "other.example"
    assert openssl("verify", "-CAfile", root, check, wrong, leaf).returncode != 0


def test_signing_certificate_signs_only(
    tmp_path: Path, authorities: Authorities, now: datetime
) -> None:
    cert = ca.issue_signing_certificate(
        authorities.service_root, ca.new_private_key().public_key(), TRUST_DOMAIN, now
    )
    assert cert.subject.rfc4514_string() == "CN=kym-gateway-signer"
    assert {ext.oid for ext in cert.extensions} == LEAF_EXTENSIONS - {
        ExtensionOID.EXTENDED_KEY_USAGE
    }
    usage = extension(cert, x509.KeyUsage)
    assert usage.critical and only_digital_signature(usage.value)
    root = write_pem(tmp_path / "service-root.pem", authorities.service_root.certificate)
    openssl_ok("verify", "-x509_strict", "-CAfile", root, write_pem(tmp_path / "s.pem", cert))


@pytest.mark.parametrize("kind", ["server", "signer"])
def test_service_root_certificates_are_not_device_clients(
    tmp_path: Path, authorities: Authorities, now: datetime, kind: str
) -> None:
    public_key = ca.new_private_key().public_key()
    cert = (
        ca.issue_server_certificate(authorities.service_root, public_key, "127.0.0.1", now)
        if kind == "server"
        else ca.issue_signing_certificate(authorities.service_root, public_key, TRUST_DOMAIN, now)
    )
    result = strict_verify(tmp_path, cert, authorities, "-purpose", "sslclient")
    assert result.returncode != 0
    assert "unable to get local issuer certificate" in result.stdout + result.stderr


def test_cas_pass_strict_verify_and_issuing_ca_has_pathlen_zero(
    tmp_path: Path, authorities: Authorities
) -> None:
    root = write_pem(tmp_path / "root.pem", authorities.device_root.certificate)
    issuing = write_pem(tmp_path / "issuing.pem", authorities.device_issuing.certificate)
    openssl_ok("verify", "-x509_strict", "-CAfile", root, issuing)
    for authority in (
        authorities.device_root,
        authorities.device_issuing,
        authorities.service_root,
    ):
        cert = authority.certificate
        constraints = extension(cert, x509.BasicConstraints)
        assert constraints.critical and constraints.value.ca
        usage = extension(cert, x509.KeyUsage)
        assert usage.critical and usage.value.key_cert_sign and usage.value.crl_sign
        assert extension(cert, x509.SubjectKeyIdentifier).value
        assert extension(cert, x509.AuthorityKeyIdentifier).value
    issuing_constraints = extension(authorities.device_issuing.certificate, x509.BasicConstraints)
    assert issuing_constraints.value.path_length == 0


def test_leaf_never_outlives_its_issuer(authorities: Authorities, now: datetime) -> None:
    cert = ca.issue_gateway_client_certificate(
        authorities.device_issuing,
        ca.new_private_key().public_key(),
        0,
        TRUST_DOMAIN,
        now,
        validity_days=100_000,
    )
    assert cert.not_valid_after_utc == authorities.device_issuing.certificate.not_valid_after_utc
