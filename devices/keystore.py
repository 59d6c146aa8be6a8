"""The CA material in the data dir: created on first use, loaded afterwards.

The only part of the PKI that touches files. Every file is written atomically (temporary file,
fsync, `os.replace`), keys with mode 0600 and directories with mode 0700. The CA directory is
assembled in a temporary directory and renamed into place, so that a crash during the first
start leaves either no `ca/` or a complete one, and CA keys are never overwritten.

    DIR/ca/device-root.{crt,key}      device root CA: signs only the device issuing CA
    DIR/ca/device-issuing.{crt,key}   device issuing CA: devices and gateway MQTT clients
    DIR/ca/service-root.{crt,key}     service root CA: broker server and result signing
    DIR/ca/signer.{crt,key}           the gateway's result-signing certificate and key
    DIR/ca/bundle.pem                 GET /v1/ca: device root, device issuing, service root
    DIR/ca/device-cafile.pem          the broker's cafile: device root and device issuing
    DIR/ca/device.crl                 the broker's crlfile: the device issuing CA's CRL
    DIR/tls/broker.{crt,key}          the broker's server certificate
    DIR/tls/http.{crt,key}            the HTTP API's server certificate (`kym serve --http-tls`)
    DIR/tls/gateway-<n>.{crt,key}     gateway worker n's MQTT client identity
"""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from devices import ca
from devices.ca import CertifiedKey
from devices.crl import build_crl
from devices.errors import KeystoreDamaged
from devices.files import fsync_dir, write_atomic

KEY_MODE = 0o600
PUBLIC_MODE = 0o644
DIR_MODE = 0o700
RENEW_BEFORE = timedelta(days=30)
_PEM = serialization.Encoding.PEM


@dataclass(frozen=True)
class PkiPaths:
    """Where the PKI's files live under a data dir."""

    ca_dir: Path
    tls_dir: Path
    device_root_cert: Path
    device_root_key: Path
    device_issuing_cert: Path
    device_issuing_key: Path
    service_root_cert: Path
    service_root_key: Path
    signer_cert: Path
    signer_key: Path
    bundle: Path
    device_cafile: Path
    crl: Path

    @classmethod
    def under(cls, data_dir: Path) -> PkiPaths:
        """The layout of the module docstring, rooted at `data_dir`."""
        ca_dir = data_dir.resolve() / "ca"
        return cls(
            ca_dir=ca_dir,
            tls_dir=data_dir.resolve() / "tls",
            device_root_cert=ca_dir / "device-root.crt",
            device_root_key=ca_dir / "device-root.key",
            device_issuing_cert=ca_dir / "device-issuing.crt",
            device_issuing_key=ca_dir / "device-issuing.key",
            service_root_cert=ca_dir / "service-root.crt",
            service_root_key=ca_dir / "service-root.key",
            signer_cert=ca_dir / "signer.crt",
            signer_key=ca_dir / "signer.key",
            bundle=ca_dir / "bundle.pem",
            device_cafile=ca_dir / "device-cafile.pem",
            crl=ca_dir / "device.crl",
        )


@dataclass(frozen=True)
class Pki:
    """The gateway's certificate authorities, its signer, and where their files are."""

    trust_domain: str
    device_root: CertifiedKey
    device_issuing: CertifiedKey
    service_root: CertifiedKey
    signer: CertifiedKey
    paths: PkiPaths


def load_or_create_pki(data_dir: Path, trust_domain: str, now: datetime) -> Pki:
    """Load the PKI from `data_dir/ca`, creating it first if there is none."""
    paths = PkiPaths.under(data_dir)
    if not paths.ca_dir.exists():
        _create(paths, trust_domain, now)
    pki = Pki(
        trust_domain=trust_domain,
        device_root=_load_pair(paths.device_root_cert, paths.device_root_key),
        device_issuing=_load_pair(paths.device_issuing_cert, paths.device_issuing_key),
        service_root=_load_pair(paths.service_root_cert, paths.service_root_key),
        signer=_load_pair(paths.signer_cert, paths.signer_key),
        paths=paths,
    )
    for derived in (paths.bundle, paths.device_cafile, paths.crl):
        if not derived.is_file():
            raise KeystoreDamaged(f"{derived} is missing; restore it from a backup")
    return _renew_signer(pki, now)


def ensure_server_certificate(
    pki: Pki, host: str | Sequence[str], now: datetime, name: str = "broker"
) -> tuple[Path, Path]:
    """A server certificate and key naming `host`, or each of several (DIR/tls/<name>.{crt,key}),
    re-issued when stale or naming others: the broker's, or with `name="http"` the HTTP API's."""
    cert_path, key_path = pki.paths.tls_dir / f"{name}.crt", pki.paths.tls_dir / f"{name}.key"
    sans = ca.host_general_names(host)
    if not _is_current(cert_path, key_path, pki.service_root, sans, now):
        key = ca.new_private_key()
        certificate = ca.issue_server_certificate(
            pki.service_root, key.public_key(), host, now, common_name=f"kym-{name}"
        )
        _write_leaf(cert_path, key_path, certificate, key)
    return cert_path, key_path


def ensure_gateway_client_identity(pki: Pki, n: int, now: datetime) -> tuple[Path, Path]:
    """Gateway worker `n`'s MQTT client certificate and key, re-issued when stale."""
    cert_path = pki.paths.tls_dir / f"gateway-{n}.crt"
    key_path = pki.paths.tls_dir / f"gateway-{n}.key"
    san = x509.UniformResourceIdentifier(ca.gateway_spiffe_id(pki.trust_domain, n))
    if not _is_current(cert_path, key_path, pki.device_issuing, san, now):
        key = ca.new_private_key()
        certificate = ca.issue_gateway_client_certificate(
            pki.device_issuing, key.public_key(), n, pki.trust_domain, now
        )
        _write_leaf(cert_path, key_path, certificate, key)
    return cert_path, key_path


@contextmanager
def publishing_crl(pki: Pki) -> Iterator[None]:
    """One CRL publication at a time (number, build, write, reload), across the threads and
    the processes sharing this data dir: an `flock` on `ca/device.crl.lock`. Without it a
    publication that took its number first could write last, putting an older CRL back
    over a newer one, and a device revoked meanwhile would be missing from it."""
    fd = os.open(pki.paths.crl.with_name("device.crl.lock"), os.O_RDWR | os.O_CREAT, KEY_MODE)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # and the lock with it


def write_crl(pki: Pki, crl: x509.CertificateRevocationList) -> None:
    """Replace `ca/device.crl` (the broker's crlfile) with `crl`, atomically."""
    assert crl.is_signature_valid(pki.device_issuing.private_key.public_key()), "foreign CRL"
    write_atomic(pki.paths.crl, crl.public_bytes(serialization.Encoding.PEM), PUBLIC_MODE)


def load_crl(pki: Pki) -> x509.CertificateRevocationList:
    """The CRL currently in `ca/device.crl`."""
    return x509.load_pem_x509_crl(pki.paths.crl.read_bytes())


# --- creation --------------------------------------------------------------------------------


def _create(paths: PkiPaths, trust_domain: str, now: datetime) -> None:
    data_dir = paths.ca_dir.parent
    data_dir.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".ca-", dir=data_dir))  # mode 0700
    try:
        _write_new_pki(staging, trust_domain, now)
        fsync_dir(staging)
        os.rename(staging, paths.ca_dir)
    except OSError:
        if not paths.ca_dir.is_dir():  # another process won the race: load its PKI
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    fsync_dir(data_dir)


def _write_new_pki(staging: Path, trust_domain: str, now: datetime) -> None:
    device_root = ca.create_root_ca("KYM Device Root CA", now, path_length=1)
    device_issuing = ca.create_issuing_ca(device_root, "KYM Device Issuing CA", now)
    service_root = ca.create_root_ca("KYM Service Root CA", now, path_length=0)
    signer_key = ca.new_private_key()
    signer = CertifiedKey(
        ca.issue_signing_certificate(service_root, signer_key.public_key(), trust_domain, now),
        signer_key,
    )
    files = {
        "device-root": device_root,
        "device-issuing": device_issuing,
        "service-root": service_root,
        "signer": signer,
    }
    for stem, pair in files.items():
        write_atomic(staging / f"{stem}.key", _key_pem(pair.private_key), KEY_MODE)
        write_atomic(staging / f"{stem}.crt", _cert_pem(pair.certificate), PUBLIC_MODE)
    bundle = [device_root, device_issuing, service_root]
    write_atomic(staging / "bundle.pem", _chain_pem(bundle), PUBLIC_MODE)
    cafile = _chain_pem([device_root, device_issuing])
    write_atomic(staging / "device-cafile.pem", cafile, PUBLIC_MODE)
    crl = build_crl(device_issuing, [], crl_number=0, now=now)
    write_atomic(staging / "device.crl", crl.public_bytes(_PEM), PUBLIC_MODE)


def _renew_signer(pki: Pki, now: datetime) -> Pki:
    signer, issuer = pki.signer, pki.service_root
    san = x509.UniformResourceIdentifier(ca.signer_spiffe_id(pki.trust_domain))
    if _is_fresh(signer.certificate, issuer, san, now):
        return pki
    public_key = signer.private_key.public_key()
    certificate = ca.issue_signing_certificate(issuer, public_key, pki.trust_domain, now)
    write_atomic(pki.paths.signer_cert, _cert_pem(certificate), PUBLIC_MODE)
    return replace(pki, signer=CertifiedKey(certificate, signer.private_key))


# --- leaves ----------------------------------------------------------------------------------


_Names = x509.GeneralName | list[x509.GeneralName]


def _is_current(
    cert_path: Path, key_path: Path, issuer: CertifiedKey, san: _Names, now: datetime
) -> bool:
    try:
        pair = _load_pair(cert_path, key_path)
    except KeystoreDamaged:
        return False
    return _is_fresh(pair.certificate, issuer, san, now)


def _is_fresh(
    certificate: x509.Certificate, issuer: CertifiedKey, san: _Names, now: datetime
) -> bool:
    """Issued by `issuer`, naming exactly `san` (each of a list, in order), and valid for more
    than RENEW_BEFORE."""
    sans = san if isinstance(san, list) else [san]
    try:
        certificate.verify_directly_issued_by(issuer.certificate)
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except (ValueError, TypeError, InvalidSignature, x509.ExtensionNotFound):
        return False
    return list(names.value) == sans and certificate.not_valid_after_utc - now > RENEW_BEFORE


def _write_leaf(
    cert_path: Path, key_path: Path, certificate: x509.Certificate, key: ec.EllipticCurvePrivateKey
) -> None:
    cert_path.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    # The key goes first: a crash in between leaves a mismatched pair, which reads as stale.
    write_atomic(key_path, _key_pem(key), KEY_MODE)
    write_atomic(cert_path, _cert_pem(certificate), PUBLIC_MODE)


# --- files -----------------------------------------------------------------------------------


def _load_pair(cert_path: Path, key_path: Path) -> CertifiedKey:
    try:
        certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise KeystoreDamaged(f"cannot load {cert_path.name} and {key_path.name}: {exc}") from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise KeystoreDamaged(f"{key_path} is not an EC private key")
    if key.public_key() != certificate.public_key():
        raise KeystoreDamaged(f"{key_path} does not belong to {cert_path}")
    return CertifiedKey(certificate, key)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


def _cert_pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(_PEM)


def _chain_pem(pairs: list[CertifiedKey]) -> bytes:
    return b"".join(_cert_pem(pair.certificate) for pair in pairs)
