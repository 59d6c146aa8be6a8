"""A device's identity on disk: its key, its certificate and what it trusts.

    STATE_DIR/device.key      the private key (P-256 or Ed25519, PKCS#8 PEM, mode 0600)
    STATE_DIR/device.crt      the certificate the gateway issued (CN = the device id)
    STATE_DIR/ca-chain.pem    the chain of device certificates (`ca_chain` at registration)
    STATE_DIR/ca-bundle.pem   GET /v1/ca: verifies the broker and the gateway's signer
    STATE_DIR/gateway.crt     GET /v1/ca/gateway: the certificate that signs results
    STATE_DIR/device.json     the device id and what it was registered as
    STATE_DIR/journal.jsonl   the order journal (see `devices.sdk.journal`)
    STATE_DIR/device.csr      the CSR `kym device keygen` made (not needed afterwards)
    STATE_DIR/endpoints.json  the API and broker given to `kym device register`

Every file is written atomically (temporary file, fsync, rename): a crash leaves the old file
or the new one, never half of one.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from devices import files
from devices.sdk.errors import IdentityMissing
from devices.wire import PrivateKey

KeyType = Literal["p256", "ed25519"]
KEY_MODE = 0o600
PUBLIC_MODE = 0o644
DIR_MODE = 0o700


def generate_key(key_type: KeyType = "p256") -> PrivateKey:
    """A fresh device key: EC P-256 (signs ES256) or Ed25519 (signs EdDSA)."""
    if key_type == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    raise ValueError(f"unknown key type {key_type!r}: use 'p256' or 'ed25519'")


def make_csr(key: PrivateKey, common_name: str = "kym-device") -> str:
    """A PEM CSR for the key; the gateway takes only its key and names the device itself."""
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    digest = hashes.SHA256() if isinstance(key, ec.EllipticCurvePrivateKey) else None
    csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, digest)
    return csr.public_bytes(serialization.Encoding.PEM).decode("ascii")


def save_private_key(path: Path, key: PrivateKey) -> None:
    """Write the key as unencrypted PKCS#8 PEM with mode 0600."""
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_atomic(path, pem, KEY_MODE)


def load_private_key(path: Path) -> PrivateKey:
    """Read a P-256 or Ed25519 private key written by `save_private_key` (or openssl)."""
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    raise ValueError(f"{path} holds neither a P-256 nor an Ed25519 key")


def load_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate in a PEM file, in file order."""
    return x509.load_pem_x509_certificates(path.read_bytes())


def write_atomic(path: Path, data: bytes, mode: int = PUBLIC_MODE) -> None:
    """Replace `path` with `data` durably (`devices.files.write_atomic`), making its directory
    first."""
    path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    files.write_atomic(path, data, mode)


@dataclass(frozen=True)
class StatePaths:
    """Where a device keeps its files (see the module docstring)."""

    root: Path

    @property
    def key(self) -> Path:
        return self.root / "device.key"

    @property
    def certificate(self) -> Path:
        return self.root / "device.crt"

    @property
    def ca_chain(self) -> Path:
        return self.root / "ca-chain.pem"

    @property
    def ca_bundle(self) -> Path:
        return self.root / "ca-bundle.pem"

    @property
    def gateway_certificate(self) -> Path:
        return self.root / "gateway.crt"

    @property
    def record(self) -> Path:
        return self.root / "device.json"

    @property
    def journal(self) -> Path:
        return self.root / "journal.jsonl"


@dataclass(frozen=True)
class Identity:
    """A provisioned device: its id, key and certificate, and where its files are."""

    device_id: str
    key: PrivateKey
    certificate: x509.Certificate
    paths: StatePaths
    details: dict[str, Any]

    @classmethod
    def load(cls, state_dir: Path) -> Identity:
        """The identity stored in `state_dir`; raises IdentityMissing if it is incomplete."""
        paths = StatePaths(Path(state_dir))
        needed = (
            paths.key,
            paths.certificate,
            paths.record,
            paths.ca_bundle,
            paths.gateway_certificate,
        )
        missing = [p.name for p in needed if not p.is_file()]
        if missing:
            raise IdentityMissing(f"{state_dir} lacks {', '.join(missing)}")
        details = json.loads(paths.record.read_text())
        key = load_private_key(paths.key)
        certificate = load_certificates(paths.certificate)[0]
        if certificate.public_key() != key.public_key():
            raise IdentityMissing(f"{paths.key} does not belong to {paths.certificate}")
        return cls(details["id"], key, certificate, paths, details)

    @staticmethod
    def exists(state_dir: Path) -> bool:
        """Whether `state_dir` holds a complete identity."""
        try:
            Identity.load(state_dir)
        except IdentityMissing:
            return False
        return True
