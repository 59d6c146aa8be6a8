"""The `openssl` command line, as a device maker or an operator would use it."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization

OPENSSL = "/usr/bin/openssl"


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


def make_openssl_csr(directory: Path, name: str, algorithm: str = "ec") -> tuple[Path, str]:
    """A device key and CSR made by the `openssl` command line, as on a real device."""
    key = directory / f"{name}.key"
    if algorithm == "ec":
        openssl_ok("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key)
    else:
        openssl_ok("genpkey", "-algorithm", "ed25519", "-out", key)
    csr = openssl_ok("req", "-new", "-key", key, "-subj", f"/CN={name}")
    return key, csr


def openssl_csr(workdir: Path, algorithm: str, subject: str = "/CN=ignored") -> bytes:
    """A key and a CSR asking for more than it may get: `p256`, `p384`, `ed25519` or `rsa`.

    The CSR asks for a foreign SAN and CA:TRUE, which the CA must ignore.
    """
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


def write_pem(path: Path, *items: x509.Certificate | x509.CertificateRevocationList) -> Path:
    """Write certificates (or a CRL) as PEM to `path`."""
    path.write_bytes(b"".join(item.public_bytes(serialization.Encoding.PEM) for item in items))
    return path
