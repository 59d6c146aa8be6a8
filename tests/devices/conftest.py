"""Fixtures for the device PKI: real keys, real certificates, the real `openssl` command."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from devices import ca
from devices.ca import CertifiedKey

OPENSSL = "/usr/bin/openssl"
TRUST_DOMAIN = "kym.test"


def openssl(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the openssl CLI; the caller checks `returncode`."""
    return subprocess.run(
        [OPENSSL, *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=30
    )


def openssl_ok(*args: str | Path, cwd: Path | None = None) -> str:
    """Run the openssl CLI and fail the test with its output if it fails."""
    result = openssl(*args, cwd=cwd)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def write_pem(path: Path, *items: x509.Certificate | x509.CertificateRevocationList) -> Path:
    """Write certificates (or a CRL) as PEM to `path`."""
    path.write_bytes(b"".join(item.public_bytes(serialization.Encoding.PEM) for item in items))
    return path


@dataclass(frozen=True)
class Authorities:
    """The gateway's CAs, made in memory with `devices.ca`."""

    device_root: CertifiedKey
    device_issuing: CertifiedKey
    service_root: CertifiedKey


@pytest.fixture(scope="session")
def now() -> datetime:
    """The current time, whole seconds (openssl checks validity against the real clock)."""
    return datetime.now(UTC).replace(microsecond=0)


@pytest.fixture(scope="session")
def authorities(now: datetime) -> Authorities:
    """A device root, its issuing CA and a service root, shared by the session."""
    device_root = ca.create_root_ca("Test Device Root", now, path_length=1)
    return Authorities(
        device_root=device_root,
        device_issuing=ca.create_issuing_ca(device_root, "Test Device Issuing", now),
        service_root=ca.create_root_ca("Test Service Root", now, path_length=0),
    )


def openssl_csr(workdir: Path, algorithm: str, subject: str = "/CN=ignored") -> bytes:
    """A key and CSR made by the openssl CLI: `p256`, `p384`, `ed25519` or `rsa`."""
    key = workdir / f"{algorithm}.key"
    if algorithm in ("p256", "p384"):
        curve = {"p256": "prime256v1", "p384": "secp384r1"}[algorithm]
        openssl_ok("ecparam", "-name", curve, "-genkey", "-noout", "-out", key)
    else:
        spec = {"ed25519": ["-algorithm", "ed25519"], "rsa": ["-algorithm", "rsa"]}[algorithm]
        openssl_ok("genpkey", *spec, "-out", key)
    csr = workdir / f"{algorithm}.csr"
    extensions: Sequence[str] = (
        "-addext", "subjectAltName=DNS:evil.example,URI:spiffe://evil/device/admin",
        "-addext", "basicConstraints=critical,CA:TRUE",
    )  # fmt: skip
    openssl_ok("req", "-new", "-key", key, "-subj", subject, *extensions, "-out", csr)
    return csr.read_bytes()
