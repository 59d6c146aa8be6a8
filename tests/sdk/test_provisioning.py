"""A device makes its key and CSR, is registered through the real API, and keeps its files."""

from __future__ import annotations

import stat
from datetime import UTC, datetime

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from devices.sdk import (
    ApiError,
    GatewayApi,
    Identity,
    Registration,
    UntrustedGatewayCertificate,
    generate_key,
    make_csr,
    provision,
)
from devices.sdk.identity import load_certificates
from devices.sdk.trust import check_gateway_certificate
from tests.support.stack import Http


@pytest.mark.parametrize("key_type", ["p256", "ed25519"])
def test_makes_a_csr_the_gateway_accepts_and_stores_the_identity(http: Http, key_type: str) -> None:
    identity, _ = http.provision(f"dev-{key_type}", key_type, approve=False)  # type: ignore[arg-type]
    expected = ec.EllipticCurvePrivateKey if key_type == "p256" else ed25519.Ed25519PrivateKey
    assert isinstance(identity.key, expected)
    cn = identity.certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert cn == identity.device_id
    assert identity.certificate.public_key() == identity.key.public_key()
    assert stat.S_IMODE(identity.paths.key.stat().st_mode) == 0o600
    assert identity.details["status_at_registration"] == "pending"
    assert load_certificates(identity.paths.ca_bundle)
    assert load_certificates(identity.paths.ca_chain)
    signer = load_certificates(identity.paths.gateway_certificate)[0]
    assert signer == http.stack.ctx.pki.signer.certificate


def test_provisioning_again_loads_the_identity_instead_of_registering_twice(http: Http) -> None:
    identity, owner = http.provision("car")
    integrator = http.party("integrators", "someone else")
    registration = Registration(
        owner_id=owner["id"], kind="car", manufacturer="ACME", model="M1", serial_number="SN-car"
    )
    with GatewayApi(http.url, integrator["api_key"]) as api:
        again = provision(identity.paths.root, api, registration)
    assert again.device_id == identity.device_id
    assert again.certificate == identity.certificate


def test_refusals_of_the_api_are_errors_with_the_contracts_codes(http: Http) -> None:
    owner = http.party("owners", "o")
    integrator = http.party("integrators", "i")
    registration = Registration(
        owner_id=owner["id"], kind="fridge", manufacturer="ACME", model="F", serial_number="SN-1"
    )
    csr = make_csr(generate_key())
    with GatewayApi(http.url, "not-a-key") as api, pytest.raises(ApiError) as refused:
        api.register_device(registration, csr)
    assert (refused.value.status, refused.value.code) == (401, "unauthorized")
    with GatewayApi(http.url, integrator["api_key"]) as api:
        api.register_device(registration, csr)
        with pytest.raises(ApiError) as refused:
            api.register_device(registration, make_csr(generate_key("ed25519")))
    assert (refused.value.status, refused.value.code) == (409, "device_exists")


def test_a_device_certificate_never_passes_as_the_gateways_signer(http: Http) -> None:
    identity, _ = http.provision("car")
    bundle = load_certificates(identity.paths.ca_bundle)
    chain = load_certificates(identity.paths.ca_chain)
    now = datetime.now(UTC)
    check_gateway_certificate(http.stack.ctx.pki.signer.certificate, bundle, chain, now)
    with pytest.raises(UntrustedGatewayCertificate):
        check_gateway_certificate(identity.certificate, bundle, chain, now)
    foreign = _self_signed()
    with pytest.raises(UntrustedGatewayCertificate):
        check_gateway_certificate(foreign, bundle, chain, now)


def test_an_incomplete_state_dir_is_not_an_identity(http: Http) -> None:
    identity, _ = http.provision("car")
    identity.paths.gateway_certificate.unlink()
    assert not Identity.exists(identity.paths.root)


def _self_signed() -> x509.Certificate:
    from datetime import timedelta

    from cryptography.hazmat.primitives import hashes

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kym-gateway-signer")])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("evil")]), critical=False)
        .sign(key, hashes.SHA256())
    )
