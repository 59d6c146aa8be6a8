"""`load_csr` accepts self-signed P-256 and Ed25519 CSRs and refuses everything else."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from devices.ca import load_csr
from devices.errors import CsrInvalid
from tests.support.openssl import openssl_csr, openssl_ok


def test_accepts_p256_csr_made_by_openssl(tmp_path: Path) -> None:
    csr = load_csr(openssl_csr(tmp_path, "p256"))
    key = csr.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)
    assert isinstance(key.curve, ec.SECP256R1)


def test_accepts_ed25519_csr_made_by_openssl(tmp_path: Path) -> None:
    csr = load_csr(openssl_csr(tmp_path, "ed25519"))
    assert isinstance(csr.public_key(), ed25519.Ed25519PublicKey)


@pytest.mark.parametrize("algorithm", ["rsa", "p384"])
def test_refuses_csr_with_other_key_types(tmp_path: Path, algorithm: str) -> None:
    with pytest.raises(CsrInvalid, match="P-256 or Ed25519"):
        load_csr(openssl_csr(tmp_path, algorithm))


def test_refuses_csr_whose_signed_content_was_altered(tmp_path: Path) -> None:
    pem = openssl_csr(tmp_path, "p256", subject="/CN=victim")
    der = x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER)
    tampered = x509.load_der_x509_csr(der.replace(b"victim", b"victin"))
    with pytest.raises(CsrInvalid, match="self-signature"):
        load_csr(tampered.public_bytes(serialization.Encoding.PEM))


def test_refuses_csr_with_a_corrupted_signature(tmp_path: Path) -> None:
    pem = openssl_csr(tmp_path, "ed25519")
    der = bytearray(x509.load_pem_x509_csr(pem).public_bytes(serialization.Encoding.DER))
    der[-1] ^= 0x01  # the last byte of an Ed25519 signature
    corrupted = x509.load_der_x509_csr(bytes(der))
    with pytest.raises(CsrInvalid, match="self-signature"):
        load_csr(corrupted.public_bytes(serialization.Encoding.PEM))


@pytest.mark.parametrize(
    "pem",
    [
        b"",
        b"not a csr",
        b"-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
    ],
)
def test_refuses_garbage(pem: bytes) -> None:
    with pytest.raises(CsrInvalid, match="does not parse"):
        load_csr(pem)


def test_refuses_a_certificate_in_place_of_a_csr(tmp_path: Path) -> None:
    key = tmp_path / "k.pem"
    cert = tmp_path / "c.pem"
    openssl_ok("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    openssl_ok("req", "-new", "-x509", "-key", key, "-subj", "/CN=x", "-out", cert)
    with pytest.raises(CsrInvalid):
        load_csr(cert.read_bytes())
