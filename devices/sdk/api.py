"""The HTTP side of a device: registration by its integrator, and the CA certificates it trusts.

Registration runs once, usually on the production line: the device makes its key (which never
leaves it), the integrator's tool sends the CSR with the integrator's API key, and the device
stores what comes back. `provision` does all of it and is safe to run again: a state dir that
already holds an identity is loaded, not registered a second time.
"""

from __future__ import annotations

import json
import os
import ssl
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
from cryptography import x509

from devices.sdk.errors import ApiError
from devices.sdk.identity import (
    Identity,
    KeyType,
    StatePaths,
    generate_key,
    load_certificates,
    load_private_key,
    make_csr,
    save_private_key,
    write_atomic,
)
from devices.sdk.trust import check_gateway_certificate


@dataclass(frozen=True)
class Registration:
    """What an integrator declares about a device (contract section 3)."""

    owner_id: str
    kind: str
    manufacturer: str
    model: str
    serial_number: str
    currency: str = "EUR"
    category: str | None = None
    attestation: str | None = None  # PEM chain, leaf first, holding the device's key


@dataclass(frozen=True)
class Registered:
    """The API's answer to a registration."""

    id: str
    status: str
    attested: bool
    certificate: str
    ca_chain: str


def _trust(ca_file: Path | None) -> ssl.SSLContext | bool:
    """What an https API's certificate is checked against: `ca_file`, else the file that
    KYM_API_CA names, else the system's trust store."""
    path = ca_file or (Path(os.environ["KYM_API_CA"]) if os.environ.get("KYM_API_CA") else None)
    return ssl.create_default_context(cafile=str(path)) if path is not None else True


class GatewayApi:
    """A small client of the gateway's HTTP API; `api_key` is sent as a bearer token."""

    def __init__(
        self,
        base_url: str,
        api_key: str | None = None,
        *,
        timeout_s: float = 10.0,
        http: httpx.Client | None = None,
        ca_file: Path | None = None,
    ) -> None:
        """`ca_file`: the CAs to trust for an https API (a gateway serving with --http-tls:
        `GET /v1/ca` saved to a file), else KYM_API_CA, else the system's."""
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._owns_http = http is None
        self.http = http or httpx.Client(
            base_url=base_url, timeout=timeout_s, verify=_trust(ca_file)
        )
        self._headers = headers

    def request(self, method: str, path: str, body: Any = None, expect: int = 200) -> Any:
        """Call the API; the JSON answer, or ApiError with the contract's error code."""
        response = self.http.request(method, path, json=body, headers=self._headers)
        if response.status_code != expect:
            raise _api_error(response)
        if response.headers.get("content-type", "").startswith("application/json"):
            return response.json()
        return response.text

    def register_device(self, registration: Registration, csr_pem: str) -> Registered:
        """POST /v1/devices with the integrator's key."""
        body = {k: v for k, v in asdict(registration).items() if v is not None}
        answer = self.request("POST", "/v1/devices", {**body, "csr": csr_pem}, expect=201)
        return Registered(
            answer["id"],
            answer["status"],
            answer["attested"],
            answer["certificate"],
            answer["ca_chain"],
        )

    def ca_bundle(self) -> str:
        """GET /v1/ca: the CAs behind devices, the broker and the gateway's signatures."""
        return str(self.request("GET", "/v1/ca"))

    def gateway_certificate(self) -> str:
        """GET /v1/ca/gateway: the certificate that signs results and events."""
        return str(self.request("GET", "/v1/ca/gateway"))

    def close(self) -> None:
        if self._owns_http:
            self.http.close()

    def __enter__(self) -> GatewayApi:
        return self

    def __exit__(self, *_: type[BaseException] | BaseException | TracebackType | None) -> None:
        self.close()


def provision(
    state_dir: Path,
    api: GatewayApi,
    registration: Registration,
    key_type: KeyType = "p256",
    *,
    csr_pem: str | None = None,
) -> Identity:
    """Make a key, register it through `api` (the integrator's key) and store the identity.

    A key already in the state dir (from `kym device keygen` or openssl) is used, and so is
    `csr_pem` when given (it must be for that key); otherwise the CSR is made here.

    Runs again safely: a complete identity is loaded; a key made by an earlier, interrupted
    run is reused (a registration that succeeded but was not stored answers 409
    `device_exists`: the integrator must revoke that device and register a new serial number).
    """
    paths = StatePaths(Path(state_dir))
    if Identity.exists(paths.root):
        return Identity.load(paths.root)
    if paths.key.is_file():
        key = load_private_key(paths.key)
    else:
        key = generate_key(key_type)
        save_private_key(paths.key, key)  # before the CSR leaves: the certificate needs it
    csr = csr_pem or make_csr(key, registration.serial_number)
    registered = api.register_device(registration, csr)
    write_atomic(paths.certificate, registered.certificate.encode())
    write_atomic(paths.ca_chain, registered.ca_chain.encode())
    refresh_trust(paths.root, api)
    record = {
        "id": registered.id,
        "status_at_registration": registered.status,
        "attested": registered.attested,
        **asdict(registration),
    }
    write_atomic(paths.record, json.dumps(record, indent=2).encode())  # last: marks it complete
    return Identity.load(paths.root)


def refresh_trust(state_dir: Path, api: GatewayApi, now: datetime | None = None) -> None:
    """Fetch GET /v1/ca and GET /v1/ca/gateway, check the signer and store both."""
    paths = StatePaths(Path(state_dir))
    bundle_pem, signer_pem = api.ca_bundle(), api.gateway_certificate()
    bundle = x509.load_pem_x509_certificates(bundle_pem.encode())
    signer = x509.load_pem_x509_certificate(signer_pem.encode())
    device_chain = load_certificates(paths.ca_chain) if paths.ca_chain.is_file() else []
    check_gateway_certificate(signer, bundle, device_chain, now or datetime.now(UTC))
    write_atomic(paths.ca_bundle, bundle_pem.encode())
    write_atomic(paths.gateway_certificate, signer_pem.encode())


def _api_error(response: httpx.Response) -> ApiError:
    try:
        error = response.json()["error"]
        return ApiError(response.status_code, str(error["code"]), str(error["message"]))
    except (ValueError, KeyError, TypeError):
        return ApiError(response.status_code, "unexpected_answer", response.text[:200])
