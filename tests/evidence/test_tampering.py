"""Tampering with any part of a bundle is caught, by `kym evidence verify` (naming the part)
and by the verifier written in the tests."""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509

from gateway.orders import batch, decide
from tests.evidence import independent
from tests.evidence.scenes import SCENES
from tests.support.evidence import Bundle, entry, kym_verify
from tests.support.pki import make_authorities, pem
from tests.support.world import World


def b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def with_payload(token: str, change: Callable[[dict[str, Any]], None]) -> str:
    """The same JWS with its payload changed and its signature kept."""
    header, payload, signature = token.split(".")
    body = json.loads(independent.b64url(payload))
    change(body)
    return f"{header}.{b64(json.dumps(body).encode())}.{signature}"


def order(b: Bundle) -> None:
    b["order"]["jws"] = with_payload(b["order"]["jws"], lambda p: p.update(amount=p["amount"] + 1))


def certificate(b: Bundle) -> None:
    b["order"]["certificate"] = b["gateway"]["certificate"]  # a real certificate, not the device's


def consent(b: Bundle) -> None:
    b["consent"]["jws"] = with_payload(b["consent"]["jws"], lambda p: p.update(decided_at=1))


def result(b: Bundle) -> None:
    b["results"][-1] = with_payload(b["results"][-1], lambda p: p.update(amount=1))


def proof(b: Bundle) -> None:
    path = next(p for p in b["audit"]["proofs"] if p)
    path[0] = ("0" if path[0][0] != "0" else "1") + path[0][1:]


def tree_head(b: Bundle) -> None:
    b["audit"]["tree_head"] = with_payload(
        b["audit"]["tree_head"], lambda p: p.update(tree_size=p["tree_size"] + 1)
    )


def dropped_result(b: Bundle) -> None:
    b["results"] = [
        t for t in b["results"] if '"approved"' not in str(independent.b64url(t.split(".")[1]))
    ]


TAMPERINGS = {
    "order": (order, "order"),
    "certificate": (certificate, "order"),
    "consent": (consent, "consent"),
    "result": (result, "result"),
    "entry": (entry, "audit entry"),
    "proof": (proof, "audit entry"),
    "tree head": (tree_head, "tree head"),
    "no approved result": (dropped_result, "results"),
}


@pytest.fixture
def signed(world: World) -> tuple[Bundle, bytes]:
    scene = SCENES["rules"](world)
    world.device("filler", rules={"currency": "EUR"})  # more entries: proofs of some length
    return scene.bundle(), scene.ca()


@pytest.mark.parametrize("part", sorted(TAMPERINGS))
def test_tampering_is_caught(signed: tuple[Bundle, bytes], tmp_path: Path, part: str) -> None:
    bundle, ca = signed
    tamper, named = TAMPERINGS[part]
    changed = copy.deepcopy(bundle)
    tamper(changed)
    assert changed != bundle
    code, output = kym_verify(tmp_path, changed, ca)
    assert code == 1, output
    assert f"FAILED {named}" in output, output
    with pytest.raises(Exception):  # noqa: B017, PT011 - any refusal of the independent check
        independent.check(changed, ca)


def test_a_foreign_ca_bundle_is_refused(signed: tuple[Bundle, bytes], tmp_path: Path) -> None:
    bundle, _ca = signed
    other = make_authorities(datetime.now(UTC))  # the same kinds of CA, not the gateway's
    foreign = pem(
        *(a.certificate for a in (other.device_root, other.device_issuing, other.service_root))
    )
    code, output = kym_verify(tmp_path, bundle, foreign)
    assert code == 1 and "does not chain" in output, output


def test_a_ca_file_without_a_root_is_reported_not_a_crash(
    signed: tuple[Bundle, bytes], tmp_path: Path
) -> None:
    """The gateway's certificate alone, or a device's chain without its root: natural mistakes
    for `--ca`, which named a failure of their own instead of a traceback."""
    bundle, ca = signed
    no_roots = b"".join(
        pem(c) for c in x509.load_pem_x509_certificates(ca) if c.issuer != c.subject
    )
    code, output = kym_verify(tmp_path, bundle, no_roots)
    assert code == 1 and "Traceback" not in output, output
    assert "holds no root certificate" in output, output


def test_what_is_not_json_is_exit_2(tmp_path: Path) -> None:
    (tmp_path / "bundle.json").write_text("{not json")
    (tmp_path / "ca.pem").write_text("")
    from click.testing import CliRunner

    from gateway.cli import main

    args = ["evidence", "verify", str(tmp_path / "bundle.json"), "--ca", str(tmp_path / "ca.pem")]
    assert CliRunner().invoke(main, args).exit_code == 2


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _paths(v, (*prefix, k))] + [prefix]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _paths(v, (*prefix, i))] + [prefix]
    return [prefix]


def test_any_part_replaced_by_anything_is_reported_not_a_crash(
    signed: tuple[Bundle, bytes],
) -> None:
    from gateway.evidence.verify import verify_bundle

    bundle, ca = signed
    for path in _paths(bundle)[:400]:
        if not path:
            continue
        junks: tuple[object, ...] = (None, 7, "x", [], {})
        for junk in junks:
            changed = copy.deepcopy(bundle)
            target = changed
            for key in path[:-1]:
                target = target[key]
            target[path[-1]] = junk
            problems = verify_bundle(changed, ca)
            if changed != bundle and path != ("consent", "rules_salt"):  # nothing signs the salt
                assert problems, (path, junk)


@pytest.mark.parametrize("basis", ["rules", "approval"])
@pytest.mark.parametrize("change", [{"type": "hold"}, {"description": "10 h parking"}])
def test_an_order_swapped_for_another_the_device_signed_is_caught(
    world: World, tmp_path: Path, change: dict[str, Any], basis: str
) -> None:
    scene = SCENES[basis](world)
    bundle, car = scene.bundle(), scene.payer
    decided = independent.b64url(bundle["order"]["jws"].split(".")[1])
    other = {**json.loads(decided), **change, "nonce": "another"}
    token = car.sign(other)
    assert car.send(token)["reason"] == "idempotency_conflict"  # the same order_id: refused
    bundle["order"]["jws"] = token.decode()
    code, output = kym_verify(tmp_path, bundle, scene.ca())
    assert code == 1 and "FAILED audit entry" in output, output
    with pytest.raises(AssertionError):
        independent.check(bundle, scene.ca())


def test_a_decision_entry_without_the_order_s_digest_still_verifies(
    world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def as_before(order: Any, result: Any, order_sha256: str | None = None) -> dict[str, Any]:
        return batch.order_audit(order, result)  # what entries held before they named it

    monkeypatch.setattr(decide, "order_audit", as_before)
    scene = SCENES["rules"](world)
    bundle = scene.bundle()
    assert not any("order_sha256" in e["content"]["data"] for e in bundle["audit"]["entries"])
    independent.check(bundle, scene.ca())
    code, output = kym_verify(tmp_path, bundle, scene.ca())
    assert code == 0, output
