"""Step 1 of the decision: decode, verify against the topic device's certificate, validate.

Runs inside the batch's transaction (`gateway.orders.decide`): the certificates are read there,
and a rotated-in certificate's first use is noted there. A certificate's key is parsed once per
serial (`KeyRing`), so checking a signature costs one verification, and the certificates
are kept by the ring's `StateCache` until any certificate changes (`gateway.orders.cache`).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from joserfc.jwk import ECKey, OKPKey
from sqlalchemy import Connection

from devices import wire
from devices.contract import Reason, device_of_orders_topic
from devices.registry import DeviceCertificate, valid_certificates
from gateway.orders.cache import StateCache

log = logging.getLogger("kym.orders")


@dataclass(frozen=True)
class Checked:
    """A message after step 1: an order to decide, or a rejection to answer."""

    device_id: str
    order_id: str | None
    order: wire.Order | None = None
    payload: dict[str, Any] | None = None
    reason: Reason | None = None  # set when rejected
    first_use: str | None = None  # serial of a rotated-in certificate signing for the first time
    token: str | None = None  # the order's JWS as received (kept for evidence)


class KeyRing:
    """Parsed device keys by certificate serial: a certificate is parsed once, not per message;
    `state`: the worker's copies of certificates, owners' settings, rules and mandates."""

    def __init__(self) -> None:
        self._keys: dict[str, tuple[wire.PublicKey, ECKey | OKPKey]] = {}
        self.state = StateCache()

    def key(self, serial: str, certificate_pem: str) -> tuple[wire.PublicKey, ECKey | OKPKey]:
        found = self._keys.get(serial)
        if found is None:
            public = x509.load_pem_x509_certificate(certificate_pem.encode()).public_key()
            assert isinstance(public, wire.PublicKey)
            found = self._keys[serial] = (public, wire.jose_key(public))
        return found


def check_messages(
    conn: Connection,
    keyring: KeyRing,
    messages: Iterable[tuple[str, bytes]],
    now: datetime,
    grace: timedelta,
) -> list[Checked]:
    """Step 1 for a batch of (topic, payload); messages on other topics are dropped."""
    decoded = []
    for topic, raw in messages:
        device_id = device_of_orders_topic(topic)
        if device_id is None:
            log.warning("ignoring a message on %r", topic)
            continue
        decoded.append((device_id, raw))
    ids = {device_id for device_id, _ in decoded}
    rows = keyring.state.certificates_of(conn, ids) if ids else {}
    valid = {device_id: valid_certificates(certs, now, grace) for device_id, certs in rows.items()}
    return [check(keyring, valid.get(device_id, []), device_id, raw) for device_id, raw in decoded]


def check(
    keyring: KeyRing, certificates: list[DeviceCertificate], device_id: str, raw: bytes
) -> Checked:
    """Decoding, the signature against one of the device's valid certificates, the schema."""
    try:
        alg, payload = wire.decode(raw)
    except wire.InvalidMessage:
        order_id = wire.order_id_of(wire.payload_of(raw))
        return Checked(device_id, order_id, reason=Reason.INVALID_MESSAGE)
    order_id = wire.order_id_of(payload)
    signer = _signer(keyring, certificates, raw, alg)
    if signer is None:
        return Checked(device_id, order_id, reason=Reason.INVALID_SIGNATURE)
    try:
        order = wire.parse_order(payload, device_id)
    except wire.InvalidMessage:
        return Checked(device_id, order_id, reason=Reason.INVALID_MESSAGE)
    first_use = None
    if signer is certificates[0] and signer.first_used_at is None and len(certificates) > 1:
        first_use = signer.serial  # the newer certificate's first use retires the older one
    token = raw.decode("ascii")  # verified above, so ASCII
    return Checked(device_id, order.order_id, order, payload, first_use=first_use, token=token)


def _signer(
    keyring: KeyRing, certificates: list[DeviceCertificate], raw: bytes, alg: str
) -> DeviceCertificate | None:
    for certificate in certificates:
        public, jose = keyring.key(certificate.serial, certificate.certificate_pem)
        try:
            wire.verify(raw.decode("ascii"), alg, public, jose)
        except wire.InvalidSignature:
            continue
        return certificate
    return None
