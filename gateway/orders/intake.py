"""Step 1 of the decision: decode, verify against the topic device's certificate, validate.

Runs inside the batch's transaction (`gateway.orders.decide`): the certificates are read there,
and a rotated-in certificate's first use is noted there. A certificate's key is parsed once per
serial (`KeyRing`), so checking a signature costs one verification, and the certificates
are kept by the ring's `StateCache` until any certificate changes (`gateway.orders.cache`).

Most signatures are checked ahead, outside the transaction, by a helper process
(`gateway.orders.verifier`) with the keys of the certificates the ring last saw valid for the
device (`KeyRing.serials_of`). What it found (`Verified`) is taken only for certificates that
are still valid in the transaction; any other is verified here, as is every order it did not
get to in time.
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
from devices.registry import DeviceCertificate, signing_certificates, valid_at
from gateway.orders.cache import StateCache
from gateway.orders.verified import Verified

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
    # no certificate valid at the order's `ts` signed it (refused once it is known not stale)
    outside_validity: bool = False


class KeyRing:
    """Parsed device keys by certificate serial: a certificate is parsed once, not per message;
    `state`: the worker's copies of certificates, owners' settings, rules and mandates.

    The worker's thread fills it; the MQTT network thread reads `serials_of` and `public_key`
    for the verifier (whole values in dictionaries: no lock needed)."""

    def __init__(self) -> None:
        self._keys: dict[str, tuple[wire.PublicKey, ECKey | OKPKey]] = {}
        self._serials: dict[str, tuple[str, ...]] = {}  # device id -> keys parsed, valid when seen
        self.state = StateCache()

    def serials_of(self, device_id: str) -> tuple[str, ...]:
        """The device's certificates that were valid at its last order, with their keys here."""
        return self._serials.get(device_id, ())

    def public_key(self, serial: str) -> wire.PublicKey:
        return self._keys[serial][0]

    def remember(self, device_id: str, certificates: list[DeviceCertificate]) -> None:
        serials = tuple(c.serial for c in certificates if c.serial in self._keys)
        if self._serials.get(device_id) != serials:
            self._serials[device_id] = serials

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
    ahead: list[Verified | None] | None = None,
) -> list[Checked]:
    """Step 1 for a batch of (topic, payload); messages on other topics are dropped. `ahead`:
    what was found of each message's signature ahead (`verify_against`), in the same order."""
    messages = list(messages)
    found = ahead if ahead is not None else [None] * len(messages)
    decoded = []
    for (topic, raw), verified in zip(messages, found, strict=True):
        device_id = device_of_orders_topic(topic)
        if device_id is None:
            log.warning("ignoring a message on %r", topic)
            continue
        decoded.append((device_id, raw, verified))
    ids = {device_id for device_id, _, _ in decoded}
    rows = keyring.state.certificates_of(conn, ids) if ids else {}
    valid = {device: signing_certificates(certs, now, grace) for device, certs in rows.items()}
    checked = [
        check(keyring, valid.get(device_id, []), device_id, raw, verified)
        for device_id, raw, verified in decoded
    ]
    for device_id, certificates in valid.items():
        keyring.remember(device_id, certificates)  # the keys to verify its next orders ahead with
    return checked


def check(
    keyring: KeyRing,
    certificates: list[DeviceCertificate],
    device_id: str,
    raw: bytes,
    verified: Verified | None = None,
) -> Checked:
    """Decoding, the signature against one of the device's valid certificates (taking what
    was `verified` ahead for the certificates it tried), the schema. A certificate valid now
    whose validity does not hold the order's `ts` (a device's clock ahead in its certificate's
    last minutes) marks the order `outside_validity`: `decide` refuses it as unsigned once it
    is known not to be stale, since its bundle could never verify."""
    try:
        alg, payload = wire.decode(raw)
    except wire.InvalidMessage:
        order_id = wire.order_id_of(wire.payload_of(raw))
        return Checked(device_id, order_id, reason=Reason.INVALID_MESSAGE)
    order_id = wire.order_id_of(payload)
    candidates = _covering_first(certificates, payload.get("ts"))
    signer = _signer(keyring, candidates, raw, alg, verified)
    if signer is None:
        return Checked(device_id, order_id, reason=Reason.INVALID_SIGNATURE)
    try:
        order = wire.parse_order(payload, device_id)
    except wire.InvalidMessage:
        return Checked(device_id, order_id, reason=Reason.INVALID_MESSAGE)
    if signer.revoked_at is not None:  # a revoked device's: to be declined, nothing else
        return Checked(device_id, order.order_id, order, payload, token=raw.decode("ascii"))
    first_use = None
    if signer is certificates[0] and signer.first_used_at is None and len(certificates) > 1:
        first_use = signer.serial  # the newer certificate's first use retires the older one
    token = raw.decode("ascii")  # verified above, so ASCII
    outside = not valid_at(signer, order.ts)
    return Checked(
        device_id,
        order.order_id,
        order,
        payload,
        first_use=first_use,
        token=token,
        outside_validity=outside,
    )


def _covering_first(certificates: list[DeviceCertificate], ts: Any) -> list[DeviceCertificate]:
    """The certificates (newest first) with those valid at the order's `ts` before the others:
    when a renewal kept the key, the one that signed is one whose validity holds the order,
    which is where a bundle's verifier checks it (`kym evidence verify`)."""
    if len(certificates) < 2 or not isinstance(ts, int):
        return certificates  # nothing to choose from, or a `ts` the schema refuses
    return sorted(certificates, key=lambda c: not valid_at(c, ts))


def _signer(
    keyring: KeyRing,
    certificates: list[DeviceCertificate],
    raw: bytes,
    alg: str,
    verified: Verified | None,
) -> DeviceCertificate | None:
    for certificate in certificates:  # in order: the first that verifies signed it
        if verified is not None and verified.alg == alg and certificate.serial in verified.tried:
            if certificate.serial in verified.good:
                return certificate
            continue
        public, jose = keyring.key(certificate.serial, certificate.certificate_pem)
        try:
            wire.verify(raw.decode("ascii"), alg, public, jose)
        except wire.InvalidSignature:
            continue
        return certificate
    return None
