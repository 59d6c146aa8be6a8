"""The HTTP API (contract sections 2 to 5): thin routes over `gateway.service`."""

import hmac
from collections.abc import Callable
from typing import Annotated, Any, Literal

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints
from starlette.exceptions import HTTPException as StarletteHTTPException

from devices import errors as device_errors
from devices.registry import CATEGORIES, KINDS, Device, DeviceCertificate, InvalidTransition
from gateway import owners, service
from gateway.errors import Conflict, Forbidden, Invalid, KymError, NotFound, Unauthorized
from gateway.http.schemas import RulesIn
from gateway.orders import decide as payments
from gateway.parties import ADMIN, Party, is_timezone
from wallet import errors as wallet_errors

# One table from refusal to HTTP status and code; order refusals carry their own `reason`.
ERROR_STATUS: list[tuple[type[Exception], int, str | None]] = [
    (Unauthorized, 401, None),
    (Forbidden, 403, None),
    (NotFound, 404, None),
    (Invalid, 422, None),
    (Conflict, 409, None),
    (InvalidTransition, 409, "invalid_state"),
    (device_errors.CsrInvalid, 422, "csr_invalid"),
    (device_errors.AttestationInvalid, 422, "attestation_invalid"),
    (device_errors.AttestationCaInvalid, 422, "attestation_ca_invalid"),
    (wallet_errors.WalletNotFound, 404, "not_found"),
    (wallet_errors.CurrencyNotAllowed, 422, None),
    (wallet_errors.WalletRefusal, 409, None),
]

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Pem = Annotated[str, StringConstraints(min_length=1, max_length=64_000)]
Id = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


class Body(BaseModel):
    model_config = ConfigDict(extra="ignore", strict=True)


class OwnerCreate(Body):
    name: Name
    timezone: str


class IntegratorCreate(Body):
    name: Name


class MerchantCreate(Body):
    name: Name
    category: Literal[tuple(sorted(CATEGORIES))]  # type: ignore[valid-type]
    currency: Currency = "EUR"


class AttestationCaCreate(Body):
    certificate: Pem


class DeviceCreate(Body):
    owner_id: Id
    kind: Literal[tuple(sorted(KINDS))]  # type: ignore[valid-type]
    manufacturer: Name
    model: Name
    serial_number: Name
    csr: Pem
    currency: Currency = "EUR"
    category: Literal[tuple(sorted(CATEGORIES))] | None = None  # type: ignore[valid-type]
    attestation: Pem | None = None


class CertificateCreate(Body):
    csr: Pem


class TopUp(Body):
    amount: Annotated[int, Field(ge=1, le=10**12)]
    currency: Currency
    idempotency_key: Id


class Capture(Body):
    amount: Annotated[int, Field(ge=1, le=10**12)]
    idempotency_key: Id


class Void(Body):
    idempotency_key: Id


class LimitBody(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    period: Literal["day", "week", "month", "year"]
    amount: Annotated[int, Field(ge=1, le=10**12)]


class MandateCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    payee: Id | None = None
    category: Literal[tuple(sorted(CATEGORIES))] | None = None  # type: ignore[valid-type]
    max_amount: Annotated[int, Field(strict=True, ge=1, le=10**12)]
    limits: list[LimitBody] | None = None
    valid_from: AwareDatetime | None = None
    valid_until: AwareDatetime | None = None


class Decision(Body):
    decision: Literal["approve", "decline"]


class Created(BaseModel):
    id: str
    api_key: str | None = None


def create_app(ctx: service.Context, ready: Callable[[], bool] = lambda: True) -> FastAPI:
    """The FastAPI application for this gateway."""
    app = FastAPI(title="KYM gateway", version="1", docs_url="/docs", redoc_url=None)
    _install_error_handlers(app)
    authenticate = _authenticator(ctx)
    Caller = Annotated[Party, Depends(authenticate)]

    @app.get("/healthz")
    def healthz() -> Response:
        """Ready: API, database, broker connection and order subscription."""
        with ctx.db.read() as conn:
            conn.exec_driver_sql("SELECT 1")
        if not ready():
            return JSONResponse({"status": "starting"}, status_code=503)
        return JSONResponse({"status": "ok"})

    @app.post("/v1/owners", status_code=201)
    def create_owner(body: OwnerCreate, caller: Caller) -> Created:
        """Create an owner (admin)."""
        _require(caller, "admin")
        if not is_timezone(body.timezone):
            raise Invalid(
                "timezone must be an IANA name such as Europe/Berlin", reason="invalid_timezone"
            )
        return _created(service.create_party(ctx, "owner", body.model_dump()))

    @app.post("/v1/integrators", status_code=201)
    def create_integrator(body: IntegratorCreate, caller: Caller) -> Created:
        """Create an integrator (admin)."""
        _require(caller, "admin")
        return _created(service.create_party(ctx, "integrator", body.model_dump()))

    @app.post("/v1/merchants", status_code=201)
    def create_merchant(body: MerchantCreate, caller: Caller) -> Created:
        """Create a merchant (admin)."""
        _require(caller, "admin")
        return _created(service.create_party(ctx, "merchant", body.model_dump()))

    @app.post("/v1/integrators/me/attestation-cas", status_code=201)
    def add_attestation_ca(body: AttestationCaCreate, caller: Caller) -> Created:
        """Trust a manufacturer CA for attested registrations (integrator)."""
        _require(caller, "integrator")
        return Created(id=service.add_attestation_ca(ctx, caller, body.certificate))

    @app.post("/v1/devices", status_code=201)
    def register_device(body: DeviceCreate, caller: Caller) -> dict[str, Any]:
        """Register a device from its CSR (integrator)."""
        _require(caller, "integrator")
        reg = service.Registration(
            owner_id=body.owner_id,
            kind=body.kind,
            manufacturer=body.manufacturer,
            model=body.model,
            serial_number=body.serial_number,
            csr_pem=body.csr,
            currency=body.currency,
            category=body.category,
            attestation_pem=body.attestation,
        )
        device, certificate = service.register_device(ctx, caller, reg)
        return {
            "id": device.id,
            "status": device.status.value,
            "attested": device.attested,
            "certificate": _pem(certificate),
            "ca_chain": ctx.pki.paths.device_cafile.read_text(),
        }

    @app.get("/v1/devices/{device_id}")
    def get_device(device_id: str, caller: Caller) -> dict[str, Any]:
        """A device as its owner or integrator sees it."""
        if caller.kind not in ("owner", "integrator"):
            raise Forbidden("only a device's owner or integrator may read it")
        return _device_public(*service.get_device(ctx, caller, device_id))

    def status_route(action: str) -> None:
        @app.post(f"/v1/devices/{{device_id}}/{action}", name=f"{action}_device")
        def change(device_id: str, caller: Caller) -> dict[str, Any]:
            service.change_device_status(ctx, caller, device_id, action)
            return _device_public(*service.get_device(ctx, caller, device_id))

        change.__doc__ = f"{action.capitalize()} a device."

    for action in ("approve", "suspend", "resume", "revoke"):
        status_route(action)

    @app.post("/v1/devices/{device_id}/certificates", status_code=201)
    def rotate_certificate(
        device_id: str, body: CertificateCreate, caller: Caller
    ) -> dict[str, Any]:
        """Issue a further certificate from a new CSR (integrator)."""
        certificate = service.rotate_certificate(ctx, caller, device_id, body.csr)
        return {
            "certificate": _pem(certificate),
            "ca_chain": ctx.pki.paths.device_cafile.read_text(),
            "certificate_serial": format(certificate.serial_number, "x"),
        }

    # --- section 4: wallets --------------------------------------------------------------

    @app.post("/v1/devices/{device_id}/wallet/top-ups", status_code=201)
    def top_up(device_id: str, body: TopUp, caller: Caller) -> dict[str, int]:
        """Top up a device's wallet (owner); idempotent by key."""
        _require(caller, "owner")
        return owners.top_up(
            ctx, caller, device_id, body.amount, body.currency, body.idempotency_key
        )

    @app.get("/v1/devices/{device_id}/wallet")
    def device_wallet(device_id: str, caller: Caller) -> dict[str, Any]:
        """A device's wallet (owner)."""
        _require(caller, "owner")
        return owners.wallet_of(ctx, caller, device_id)

    @app.get("/v1/devices/{device_id}/payments")
    def device_payments(device_id: str, caller: Caller) -> dict[str, Any]:
        """A device's payments, newest first (owner)."""
        _require(caller, "owner")
        return {"items": owners.payments_of(ctx, caller, device_id)}

    @app.get("/v1/merchants/me/wallet")
    def merchant_wallet(caller: Caller) -> dict[str, Any]:
        """The merchant's wallet."""
        _require(caller, "merchant")
        wallet = owners.wallet_of(ctx, caller, None)
        return {"currency": wallet["currency"], "balance": wallet["balance"]}

    @app.get("/v1/merchants/me/payments")
    def merchant_payments(caller: Caller) -> dict[str, Any]:
        """The merchant's payments, newest first."""
        _require(caller, "merchant")
        return {"items": owners.payments_of(ctx, caller, None)}

    def adjust(
        caller: Party, payment_id: str, kind: str, amount: int | None, key: str
    ) -> dict[str, Any]:
        _require(caller, "merchant")
        owners.merchant_payment(ctx, caller, payment_id)  # 404 unless it is theirs
        result = payments.merchant_adjust(ctx, caller.id, payment_id, kind, amount, key)
        if result["status"] == "declined":
            raise Conflict(f"{kind} refused: {result['reason']}", reason=result["reason"])
        return owners.merchant_payment(ctx, caller, payment_id)

    @app.post("/v1/merchants/me/payments/{payment_id}/capture")
    def merchant_capture(payment_id: str, body: Capture, caller: Caller) -> dict[str, Any]:
        """Capture up to the held amount (merchant)."""
        return adjust(caller, payment_id, "capture", body.amount, body.idempotency_key)

    @app.post("/v1/merchants/me/payments/{payment_id}/void")
    def merchant_void(payment_id: str, body: Void, caller: Caller) -> dict[str, Any]:
        """Release a hold (merchant)."""
        return adjust(caller, payment_id, "void", None, body.idempotency_key)

    @app.post("/v1/merchants/me/payments/{payment_id}/refunds")
    def merchant_refund(payment_id: str, body: Capture, caller: Caller) -> dict[str, Any]:
        """Refund part or all of a payment (merchant)."""
        return adjust(caller, payment_id, "refund", body.amount, body.idempotency_key)

    # --- section 5: rules and consent ----------------------------------------------------

    @app.put("/v1/devices/{device_id}/rules")
    def put_rules(device_id: str, body: RulesIn, caller: Caller) -> dict[str, Any]:
        """Replace the rules. With rules, payments within them flow without approval unless
        approval_above is set and exceeded; `{}` removes the rules, and then every payment
        needs the owner's approval unless a mandate covers it."""
        _require(caller, "owner")
        return owners.put_rules(ctx, caller, device_id, body)

    @app.get("/v1/devices/{device_id}/rules")
    def get_rules(device_id: str, caller: Caller) -> dict[str, Any]:
        """The device's rules (owner)."""
        _require(caller, "owner")
        return owners.get_rules(ctx, caller, device_id)

    @app.post("/v1/devices/{device_id}/mandates", status_code=201)
    def create_mandate(device_id: str, body: MandateCreate, caller: Caller) -> dict[str, str]:
        """Give a standing consent (owner)."""
        _require(caller, "owner")
        values = body.model_dump()
        mandate_id = owners.create_mandate(ctx, caller, device_id, values)
        return {"id": mandate_id, "status": "active"}

    @app.delete("/v1/mandates/{mandate_id}")
    def revoke_mandate(mandate_id: str, caller: Caller) -> dict[str, str]:
        """Revoke a mandate at once (owner)."""
        _require(caller, "owner")
        return owners.revoke_mandate(ctx, caller, mandate_id)

    @app.get("/v1/approvals")
    def list_approvals(caller: Caller, status: str | None = None) -> dict[str, Any]:
        """The owner's approvals, e.g. ?status=pending."""
        _require(caller, "owner")
        return {"items": owners.list_approvals(ctx, caller, status)}

    @app.post("/v1/approvals/{approval_id}")
    def decide_approval(approval_id: str, body: Decision, caller: Caller) -> dict[str, Any]:
        """Approve or decline a waiting payment (owner)."""
        _require(caller, "owner")
        approval, result = payments.decide_approval(ctx, caller.id, approval_id, body.decision)
        return {
            **owners.approval_public(approval),
            "result": {"status": result["status"], "reason": result["reason"]},
        }

    @app.get("/v1/devices/{device_id}/audit")
    def device_audit(device_id: str, caller: Caller) -> dict[str, Any]:
        """The audit entries for a device (owner)."""
        _require(caller, "owner")
        return {"items": service.device_audit(ctx, caller, device_id)}

    @app.get("/v1/ca")
    def ca_bundle() -> Response:
        """The CA certificates behind devices, the broker and the gateway's signatures."""
        return _pem_response(ctx.pki.paths.bundle.read_text())

    @app.get("/v1/ca/gateway")
    def gateway_certificate() -> Response:
        """The gateway's result-signing certificate."""
        return _pem_response(ctx.pki.paths.signer_cert.read_text())

    @app.get("/v1/ca/crl")
    def crl() -> Response:
        """The device CRL."""
        return _pem_response(ctx.pki.paths.crl.read_text())

    app.state.ctx = ctx
    app.state.authenticate = authenticate
    return app


def _authenticator(ctx: service.Context) -> Callable[[Request], Party]:
    cache: dict[str, Party] = {}

    def authenticate(request: Request) -> Party:
        scheme, _, api_key = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not api_key:
            raise Unauthorized("send Authorization: Bearer <api_key>")
        admin_token = ctx.settings.admin_token or ""
        if admin_token and hmac.compare_digest(api_key.encode(), admin_token.encode()):
            return ADMIN
        party = cache.get(api_key) or service.party_for_api_key(ctx, api_key)
        if party is None:
            raise Unauthorized("unknown API key")
        cache[api_key] = party
        return party

    return authenticate


def _require(caller: Party, kind: str) -> None:
    if caller.kind != kind:
        raise Forbidden(f"only the {kind} may make this call")


def _created(pair: tuple[str, str]) -> Created:
    return Created(id=pair[0], api_key=pair[1])


def _pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def _pem_response(text: str) -> Response:
    return Response(text, media_type="application/x-pem-file")


def _device_public(device: Device, certificate: DeviceCertificate) -> dict[str, Any]:
    return {
        "id": device.id,
        "status": device.status.value,
        "kind": device.kind,
        "owner_id": device.owner_id,
        "integrator_id": device.integrator_id,
        "attested": device.attested,
        "certificate_serial": certificate.serial,
        "manufacturer": device.manufacturer,
        "model": device.model,
        "serial_number": device.serial_number,
        "currency": device.currency,
        "category": device.category,
        "created_at": device.created_at.isoformat(),
    }


def error_body(code: str, message: str) -> dict[str, Any]:
    """The contract's error shape."""
    return {"error": {"code": code, "message": message}}


def status_for(exc: Exception) -> tuple[int, str]:
    """HTTP status and error code of a refusal (order refusals are 409 with their reason)."""
    for kind, status, code in ERROR_STATUS:
        if isinstance(exc, kind):
            return status, str(code or getattr(exc, "reason", "error"))
    return 409, getattr(exc, "reason", "conflict")


def _install_error_handlers(app: FastAPI) -> None:
    refusals = tuple({kind for kind, _, _ in ERROR_STATUS} | {KymError})

    async def on_refusal(_: Request, exc: Exception) -> JSONResponse:
        status, code = status_for(exc)
        return JSONResponse(error_body(code, str(exc)), status_code=status)

    async def on_invalid(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        message = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors()
        )
        return JSONResponse(error_body("invalid_request", message), status_code=422)

    async def on_http(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "error")
        return JSONResponse(error_body(code, str(exc.detail)), status_code=exc.status_code)

    for kind in refusals:
        app.add_exception_handler(kind, on_refusal)
    app.add_exception_handler(RequestValidationError, on_invalid)
    app.add_exception_handler(StarletteHTTPException, on_http)


__all__ = ["create_app", "error_body", "status_for"]
