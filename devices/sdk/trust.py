"""Whom a device believes: the gateway's signing certificate, checked once, then every result.

The signing certificate (GET /v1/ca/gateway) must validate (RFC 5280, `x509.verification`) up
to a CA in the bundle (GET /v1/ca), and must not come from the CAs that issue device
certificates: a device's own certificate chains to the bundle too, and must never pass as the
gateway's.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from cryptography import x509
from cryptography.x509.verification import PolicyBuilder, Store, VerificationError

from devices import wire
from devices.contract import Status
from devices.sdk.errors import UntrustedGatewayCertificate

_STATUSES = frozenset(Status)  # built once: from the enum on every result it cost ~4 us


def check_gateway_certificate(
    signer: x509.Certificate,
    bundle: list[x509.Certificate],
    device_chain: list[x509.Certificate],
    now: datetime,
) -> None:
    """Raise UntrustedGatewayCertificate unless `signer` is a signer under `bundle`."""
    verifier = PolicyBuilder().store(Store(bundle)).time(now).build_client_verifier()
    try:
        path = verifier.verify(signer, []).chain
    except (VerificationError, x509.UnsupportedGeneralNameType) as exc:
        raise UntrustedGatewayCertificate(f"it does not chain to GET /v1/ca: {exc}") from exc
    if any(issuer in device_chain for issuer in path[1:]):
        raise UntrustedGatewayCertificate("it was issued by the device CA, not the service CA")
    usage = _key_usage(signer)
    if usage is not None and not usage.digital_signature:
        raise UntrustedGatewayCertificate("its key usage does not allow signatures")


class ResultVerifier:
    """Opens results and events: the gateway's signature, then the recipient."""

    def __init__(self, signer: x509.Certificate, device_id: str) -> None:
        key = signer.public_key()
        assert isinstance(key, wire.PublicKey), "a gateway signer holds an EC or Ed25519 key"
        self.device_id = device_id
        self._key = key
        self._jose = wire.jose_key(key)

    def open(self, raw: bytes) -> dict[str, Any]:
        """The verified payload; raises wire.InvalidMessage or wire.InvalidSignature."""
        payload = self.read(raw)
        self.check_signature(raw)
        return payload

    def check_signature(self, raw: bytes) -> None:
        """Raises wire.InvalidSignature unless the gateway signed it (the header's `alg` read
        alone: `read` has decoded the payload already)."""
        token = raw.decode("ascii", errors="replace")  # a non-ASCII byte fails verification
        alg = wire.header_alg(token)
        if alg is None:
            raise wire.InvalidSignature("the JOSE header holds no alg")
        wire.verify(token, alg, self._key, self._jose)

    def read(self, raw: bytes) -> dict[str, Any]:
        """The payload, its version, recipient and status checked but NOT its signature: for
        a reader that checks every signature later (`check_signature`), as `kym bench` does
        once its clock has stopped. Raises wire.InvalidMessage."""
        _, payload = wire.decode(raw)
        if payload.get("v") != 1:
            raise wire.InvalidMessage("not a version 1 result")
        if payload.get("device_id") != self.device_id:
            raise wire.InvalidMessage("addressed to another device")
        if "event" not in payload and payload.get("status") not in _STATUSES:
            raise wire.InvalidMessage("neither a result with a known status nor an event")
        return payload


def _key_usage(certificate: x509.Certificate) -> x509.KeyUsage | None:
    try:
        return certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return None
