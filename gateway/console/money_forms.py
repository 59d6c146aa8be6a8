"""The console's forms that move money or set terms for it: top-ups, funding sources, the
instalment policy, disputes and the answers to them.

As in `forms`, each form becomes the body the API would receive and goes through the API's own
model; amounts are typed in the major unit of the currency they are in (the wallet's, the
source's, the credit line's, the payment's) and read exactly by `money.parse_amount`.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from gateway.console.forms import (
    NOTHING,
    POLICY_LISTS,
    Errors,
    Money,
    amounts_into,
    by_field,
    list_errors,
    list_of,
    number,
    split,
)
from gateway.console.money import major_units
from gateway.http.routes.disputes import DisputeCreate, ResponseCreate
from gateway.http.schemas import FundingSourceCreate, InstalmentPolicyIn, TopUpCreate

SOURCE_AMOUNTS = ("floor", "credit_limit")
SOURCE_NUMBERS = ("priority", "apr_bps")
POLICY_AMOUNTS = ("min_amount", "max_amount", "keep_at_least", "auto_accept_up_to")


def _validated(
    model: Any, body: dict[str, Any], typed: Errors, money: Money
) -> tuple[Any | None, Errors]:
    """`body` through the API's `model`, or the messages by field (the typed amounts' first)."""
    try:
        validated = model.model_validate(body)
    except ValidationError as exc:
        return None, by_field(exc, body, money=money) | typed
    return (None, typed) if typed else (validated, {})


def validate_top_up(form: dict[str, str]) -> tuple[TopUpCreate | None, Errors]:
    """The body of `POST /v1/devices/{id}/wallet/top-ups` (the amount typed in the form's
    currency), or the API's messages by field."""
    currency = form.get("currency", "")
    body: dict[str, Any] = {
        "currency": currency,
        "idempotency_key": form.get("idempotency_key", ""),
    }
    typed = amounts_into(body, form, {"amount": "amount"}, currency)
    validated, errors = _validated(TopUpCreate, body, typed, Money(("amount",), currency))
    return validated, errors


def failed_top_up(target: str, form: dict[str, str], errors: Errors) -> dict[str, str]:
    """What a refused top-up form shows again beside its amount: what was typed, and why."""
    error = errors.get("amount") or one_line(errors)
    return {"target": target, "amount": form.get("amount", ""), "error": error}


def one_line(errors: Errors) -> str:
    """The messages by field as one line, for a form whose page shows a single error."""
    return "; ".join(f"{field}: {text}" for field, text in errors.items())


def validate_source(form: dict[str, str]) -> tuple[dict[str, Any] | None, Errors]:
    """The body of `POST /v1/owners/me/funding-sources` (blank fields left out, amounts typed in
    the source's currency), or the API's messages by form field."""
    body: dict[str, Any] = {
        name: form.get(name, "").strip() for name in ("name", "kind", "currency")
    }
    for name in SOURCE_NUMBERS:
        if form.get(name, "").strip():
            body[name] = number(form[name].strip())
    currency = body["currency"].upper()
    typed = amounts_into(body, form, {name: name for name in SOURCE_AMOUNTS}, currency)
    validated, errors = _validated(
        FundingSourceCreate, body, typed, Money(SOURCE_AMOUNTS, currency)
    )
    return (None, errors) if validated is None else (validated.model_dump(exclude_none=True), {})


def validate_policy(form: dict[str, str], currency: str) -> tuple[dict[str, Any] | None, Errors]:
    """The body of `PUT /v1/owners/me/instalment-policy` (amounts typed in `currency`, the
    credit line's), or the API's messages by form field."""
    body: dict[str, Any] = {"source": form.get("source", "")}
    typed = amounts_into(body, form, {name: name for name in POLICY_AMOUNTS}, currency)
    if form.get("interval_days", "").strip():
        body["interval_days"] = number(form["interval_days"].strip())
    body["counts"] = [number(part) for part in split(form.get("counts", ""))]
    if form.get("categories", "").strip():
        body["categories"] = list_of(form["categories"])
    typed = list_errors(form, POLICY_LISTS) | typed
    money = Money(POLICY_AMOUNTS, currency)
    validated, errors = _validated(InstalmentPolicyIn, body, typed, money)
    return (None, errors) if validated is None else (validated.model_dump(), {})


def policy_form(policy: dict[str, Any] | None, currency: str) -> dict[str, str]:
    """The policy form's fields for a policy as the API shows it (empty without one), its
    amounts in the major unit of `currency`, the credit line's."""
    if policy is None:
        return {}
    form = {name: major_units(policy[name], currency) for name in POLICY_AMOUNTS}
    form |= {"source": str(policy["source"]), "interval_days": str(policy["interval_days"])}
    form["counts"] = ", ".join(str(count) for count in policy["counts"])
    if policy["categories"] is not None:  # none: every category; [] offers in none
        form["categories"] = ", ".join(policy["categories"]) or NOTHING
    return form


def validate_dispute(form: dict[str, str], currency: str) -> tuple[dict[str, Any] | None, Errors]:
    """The body of `POST /v1/payments/{id}/disputes` (the amount typed in `currency`, the
    payment's), or the API's messages by form field."""
    body: dict[str, Any] = {"reason": form.get("reason", ""), "message": form.get("message", "")}
    typed = amounts_into(body, form, {"amount": "amount"}, currency)
    validated, errors = _validated(DisputeCreate, body, typed, Money(("amount",), currency))
    return (None, errors) if validated is None else (validated.model_dump(), {})


def validate_response(form: dict[str, str]) -> tuple[ResponseCreate | None, Errors]:
    """The body of `POST /v1/disputes/{id}/response`, or the API's messages by form field."""
    body = {"decision": form.get("decision", ""), "message": form.get("message", "")}
    try:
        return ResponseCreate.model_validate(body), {}
    except ValidationError as exc:
        return None, by_field(exc, body)
