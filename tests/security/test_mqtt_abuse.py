"""Order-path abuse from valid device certificates, through the whole gateway and a real broker
(the managed Mosquitto and the embedded broker): foreign topics, a claimed client id, forged
JOSE headers, replays, oversize payloads and garbage. Each test checks that no money moved
(every wallet involved keeps its balance) and that the gateway keeps serving.

The broker's own access rules (subscriptions, $share, $CONTROL, packet floods) are tested in
`test_broker_*.py`; this file is about what the gateway decides.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from joserfc.jwk import ECKey

from devices import wire
from tests.e2e.orders import Payer
from tests.support.scene import Scene
from tests.support.stack import BROKERS, Stack, run_stack

Key = ec.EllipticCurvePrivateKey


@pytest.fixture(scope="module", params=BROKERS)
def live(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """One whole gateway (broker, workers, API) per broker kind, shared by this module."""
    yield from run_stack(request, tmp_path_factory.mktemp("abuse"), pipeline=True)


@pytest.fixture
def scene(live: Stack) -> Iterator[Scene]:
    made = Scene(live)
    yield made
    made.close()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


ES256_HEADER = b64(b'{"alg":"ES256"}')
NONE_HEADER = b64(b'{"alg":"none"}')
HS256_HEADER = b64(b'{"alg":"HS256"}')


def forge(
    header: dict[str, Any], payload: dict[str, Any], key: ec.EllipticCurvePrivateKey
) -> bytes:
    """A compact JWS with exactly this header, ES256-signed by `key` (no library's opinions)."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256())))
    return f"{signing_input}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}".encode()


def wait_quietly(payer: Payer, order_id: str | None, seconds: float) -> list[dict[str, Any]]:
    """Every result for `order_id` that arrives within `seconds`."""
    time.sleep(seconds)
    return [m for m in payer.messages() if "status" in m and m.get("order_id") == order_id]


def test_an_order_on_another_devices_topic_moves_no_money(scene: Scene) -> None:
    before = scene.balances()
    for device_id in (scene.victim.id, scene.attacker.id):  # the victim's id, or its own
        order = {**scene.pay(scene.attacker, 500), "device_id": device_id}
        scene.attacker.session.publish(
            f"kym/v1/devices/{scene.victim.id}/orders",
            wire.sign(order, scene.attacker.key).encode(),
        )
        seen = wait_quietly(scene.victim, order["order_id"], 1.0)
        # the broker drops it; if a broker ever let it through, the signature check refuses it
        assert all((m["status"], m["reason"]) == ("rejected", "invalid_signature") for m in seen)
        assert wait_quietly(scene.attacker, order["order_id"], 0) == []
    assert scene.balances() == before
    scene.still_serves()


def test_a_claimed_client_id_pays_for_no_other_device(scene: Scene) -> None:
    before = scene.balances()
    impostor = scene.attacker.device.connect(client_id=scene.victim.id)
    order = {**scene.pay(scene.attacker, 500), "device_id": scene.victim.id}
    if impostor.is_up:
        impostor.publish(
            f"kym/v1/devices/{scene.victim.id}/orders",
            wire.sign(order, scene.attacker.key).encode(),
        )
        impostor.subscribe(f"kym/v1/devices/{scene.victim.id}/results")
    seen = wait_quietly(scene.victim, order["order_id"], 1.0)
    assert all((m["status"], m["reason"]) == ("rejected", "invalid_signature") for m in seen)
    assert impostor.messages == []  # nothing of the victim's reached the impostor
    impostor.close()
    assert scene.victim.session.is_up, "the impostor's client id kicked the victim off"
    assert scene.balances() == before
    scene.still_serves()


def _jwk(key: Any) -> dict[str, Any]:
    return dict(ECKey.import_key(key).as_dict(private=False))


def _x5c(certificate: x509.Certificate) -> list[str]:
    return [base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()]


def extra_header(member: str, scene: Scene) -> dict[str, Any]:
    """A JOSE header member that RFC 7515 knows and the contract refuses on orders."""
    certificate = x509.load_pem_x509_certificate(scene.attacker.device.cert.read_bytes())
    headers: dict[str, dict[str, Any]] = {
        "crit": {"crit": ["b64"], "b64": True},
        "jwk": {"jwk": _jwk(scene.attacker.key.public_key())},
        "x5c": {"x5c": _x5c(certificate)},
        "jku": {"jku": "https://attacker.example/jwks.json"},
        "kid": {"kid": scene.victim.id},
    }
    return headers[member]


@pytest.mark.parametrize("member", ["crit", "jwk", "x5c", "jku", "kid"])
def test_a_forged_jose_header_is_an_invalid_signature(scene: Scene, member: str) -> None:
    """Signed with the device's own key, so only the header member can make it fail."""
    before = scene.balances()
    order = scene.pay(scene.attacker, 300)
    header = {"alg": "ES256", **extra_header(member, scene)}
    key = scene.attacker.key
    assert isinstance(key, ec.EllipticCurvePrivateKey)  # openssl made an EC P-256 key
    result = scene.attacker.send(forge(header, order, key), order_id=order["order_id"])
    assert result is not None
    assert (result["status"], result["reason"]) == ("rejected", "invalid_signature"), str(result)
    assert scene.balances() == before


@pytest.mark.parametrize("trick", ["jwk", "x5c", "alg-none", "alg-hs256"])
def test_a_key_named_in_the_header_is_never_trusted(scene: Scene, trick: str) -> None:
    """An attacker's key in `jwk` or `x5c`, or an algorithm that needs no device key: refused
    whatever the header rules, since the topic's device certificate never verifies it."""
    before = scene.balances()
    order = {**scene.pay(scene.attacker, 300), "device_id": scene.attacker.id}
    evil = ec.generate_private_key(ec.SECP256R1())
    if trick == "jwk":
        token = forge({"alg": "ES256", "jwk": _jwk(evil.public_key())}, order, evil)
    elif trick == "x5c":
        token = forge({"alg": "ES256", "x5c": _x5c(_self_signed(evil))}, order, evil)
    elif trick == "alg-none":
        token = f"{NONE_HEADER}.{b64(json.dumps(order).encode())}.".encode()
    else:  # HMAC keyed with the device's public certificate, the classic confusion
        token = _hs256(order, scene.attacker.device.cert.read_bytes())
    result = scene.attacker.send(token, order_id=order["order_id"])
    assert result is not None and result["status"] == "rejected", result
    assert result["reason"] in ("invalid_signature", "invalid_message"), result
    assert scene.balances() == before
    scene.still_serves()


def _self_signed(key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    from datetime import UTC, datetime, timedelta

    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "evil")])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def _hs256(payload: dict[str, Any], secret: bytes) -> bytes:
    import hmac

    signing_input = f"{HS256_HEADER}.{b64(json.dumps(payload).encode())}"
    mac = hmac.new(secret, signing_input.encode(), "sha256").digest()
    return f"{signing_input}.{b64(mac)}".encode()


def test_replays_are_duplicates_and_move_nothing_more(scene: Scene) -> None:
    order = scene.pay(scene.attacker, 250)
    token = wire.sign(order, scene.attacker.key).encode()
    first = scene.attacker.send(token, order_id=order["order_id"])
    assert first is not None and first["status"] == "approved", first
    after_first = scene.balances()
    for _ in range(5):  # the same bytes again, as a replaying attacker or a re-sending SDK
        scene.attacker.send(token, wait=False)
    conflicting = {**order, "amount": 9_000}  # the same order id, another body
    refused = scene.attacker.send(
        wire.sign(conflicting, scene.attacker.key).encode(), order_id=order["order_id"], wait=False
    )
    assert refused is None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(_about(scene.attacker, order["order_id"])) < 7:
        time.sleep(0.02)
    results = _about(scene.attacker, order["order_id"])
    duplicates = [m for m in results if m.get("duplicate")]
    assert len(duplicates) == 5 and all(d["payment_id"] == first["payment_id"] for d in duplicates)
    assert [m["reason"] for m in results if m["status"] == "rejected"] == ["idempotency_conflict"]
    assert scene.balances() == after_first


def _about(payer: Payer, order_id: str) -> list[dict[str, Any]]:
    return [m for m in payer.messages() if "status" in m and m.get("order_id") == order_id]


@pytest.mark.parametrize("size", [64 * 1024, 1024 * 1024])
def test_an_oversize_payload_moves_nothing_and_the_gateway_keeps_serving(
    scene: Scene, size: int
) -> None:
    before = scene.balances()
    order = {**scene.pay(scene.attacker, 100), "description": "x" * size}
    scene.attacker.send(wire.sign(order, scene.attacker.key).encode(), wait=False)
    seen = wait_quietly(scene.attacker, order["order_id"], 1.5)
    seen += wait_quietly(scene.attacker, None, 0)
    assert all(m["status"] == "rejected" for m in seen), seen
    assert scene.balances() == before
    scene.still_serves()


GARBAGE = [
    b"",
    b"\x00\xff\xfe garbage",
    b"a.b.c",
    b"..",
    b"not-base64!.also-not.nope",
    ("[" * 100_000).encode(),
    f"{b64(b'[' * 10_000)}.{b64(b'{}')}.{b64(b'x')}".encode(),
    f"{ES256_HEADER}.{b64(b'null')}.{b64(b'x' * 64)}".encode(),
    f"{ES256_HEADER}.{b64(bytes(range(256)))}.{b64(b'x' * 64)}".encode(),
]


def test_garbage_is_rejected_and_moves_nothing(scene: Scene) -> None:
    before = scene.balances()
    for raw in GARBAGE:
        start = len(scene.attacker.session.messages)
        scene.attacker.send(raw, wait=False)
        result = scene.attacker.result_for(None, after=start)
        assert (result["status"], result["device_id"]) == ("rejected", scene.attacker.id), raw[:40]
        assert result["reason"] in ("invalid_message", "invalid_signature"), (raw[:40], result)
        assert result["payment_id"] is None and result["amount"] is None
    assert scene.balances() == before
    scene.still_serves()


def test_a_foreign_device_id_in_the_payload_is_refused(scene: Scene) -> None:
    """Signed by the attacker on its own topic, naming the victim as the payer."""
    before = scene.balances()
    order = {**scene.pay(scene.attacker, 400), "device_id": scene.victim.id}
    result = scene.attacker.send(
        wire.sign(order, scene.attacker.key).encode(), order_id=order["order_id"]
    )
    assert result is not None
    assert (result["status"], result["reason"]) == ("rejected", "invalid_message"), result
    assert scene.balances() == before


def test_another_devices_captured_order_replayed_on_ones_own_topic_is_refused(
    scene: Scene,
) -> None:
    """The victim's signed order, replayed by the attacker: the attacker's certificate does not
    verify it, so the victim pays once and the attacker not at all."""
    order = scene.pay(scene.victim, 120)
    token = wire.sign(order, scene.victim.key).encode()
    assert (scene.victim.send(token, order_id=order["order_id"]) or {}).get("status") == "approved"
    before = scene.balances()
    result = scene.attacker.send(token, order_id=order["order_id"])
    assert result is not None
    assert (result["status"], result["reason"]) == ("rejected", "invalid_signature"), str(result)
    assert scene.balances() == before
