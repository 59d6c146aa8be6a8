"""The console's forms, validated by the API's own schemas.

A form becomes the JSON body the API would receive and goes through the same pydantic model
(`RulesIn`, `MandateCreate`, `TopUpCreate`, `FundingSourceCreate`, `InstalmentPolicyIn`,
`DisputeCreate`, `ResponseCreate`), so an owner sees the API's own message next to the field
that caused it. Numbers are passed on as typed: "12.5" stays a string and the API says it wants
an integer, rather than the console guessing what was meant. The rules form shows every rule
the API can store, so that saving it changes only what the owner changed there; its
comma-separated fields are also checked as typed (`(none)` with other items, empty items), which
the schema cannot do once they are lists; so are the instalment policy's, through the same
table-driven check (`RULES_LISTS`, `POLICY_LISTS`).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import datetime
from typing import Any, NamedTuple

from pydantic import ValidationError

from gateway.http.routes.disputes import DisputeCreate, ResponseCreate
from gateway.http.schemas import (
    FundingSourceCreate,
    InstalmentPolicyIn,
    MandateCreate,
    RulesIn,
    TopUpCreate,
)

PERIODS = ("day", "week", "month", "year")
LISTS = ("allowed_categories", "blocked_categories", "allowed_payees", "blocked_payees")
SCALARS = ("max_amount", "approval_above", "approval_ttl_seconds", "low_balance_alert")
FORM_ERROR = "_form"  # errors that belong to no single field
MANAGED = {"currency", *SCALARS, "limits", "max_payments", *LISTS, "active_hours"}
PER_PERIOD = (("limit", "limits", "amount"), ("count", "max_payments", "count"))
NOTHING = "(none)"  # an allow-list that allows nothing; an empty field allows everything
UNSHOWN = (
    "These rules hold something this form cannot show, so saving it could loosen them; "
    "change them through the API (PUT /v1/devices/{id}/rules)."
)
Errors = dict[str, str]


def _number(text: str) -> int | str:
    return int(text) if re.fullmatch(r"-?\d{1,20}", text) else text


def _split(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def _nothing(text: str) -> bool:
    return text.strip().lower() == NOTHING  # no category or id has brackets: nothing stored is lost


def _list_of(text: str) -> list[str]:
    return [] if _nothing(text) else _split(text)


class ListField(NamedTuple):
    """A comma-separated field: what one item is, and what to type instead of only commas.

    `several` and `verb` are set for a field that takes `(none)` (the list that holds nothing)
    and say what the list does with its items: "(none) means no category is allowed".
    """

    item: str
    instead: str
    several: str = ""
    verb: str = ""


def _allows(item: str, several: str) -> ListField:
    instead = f"leave it empty to allow every {item}, or write {NOTHING} to allow none"
    return ListField(item, instead, several, "allow")


DROP = "leave it empty to drop this rule"
RULES_LISTS = {
    "allowed_categories": _allows("category", "categories"),
    "blocked_categories": ListField("category", DROP, "categories", "block"),
    "allowed_payees": _allows("payee", "payees"),
    "blocked_payees": ListField("payee", DROP, "payees", "block"),
    **{f"{prefix}_{p}": ListField(key, DROP) for prefix, _, key in PER_PERIOD for p in PERIODS},
}
POLICY_LISTS = {
    "counts": ListField("count", "write the numbers of instalments to offer, e.g. 3, 6, 12"),
    "categories": ListField(
        "category",
        f"leave it empty to offer instalments in every category, or write {NOTHING} for none",
        "categories",
        "offer",
    ),
}


def _list_errors(form: dict[str, str], fields: dict[str, ListField]) -> Errors:
    """Messages for comma-separated fields that are malformed as typed, which the schema cannot
    give: it sees only the list a field became, or nothing wrong at all."""
    errors: Errors = {}
    for name, words in fields.items():
        text = form.get(name, "")
        if text.strip() and not (words.verb and _nothing(text)):
            error = _list_error(words, [part.strip() for part in text.split(",")])
            if error:
                errors[name] = error
    return errors


def _list_error(words: ListField, items: list[str]) -> str | None:
    item, several, verb = words.item, words.several, words.verb
    if verb and any(_nothing(part) for part in items):
        return (
            f"{NOTHING} means no {item} is {verb}ed: write it alone, "
            f"or list the {several} to {verb} without it."
        )
    if not any(items):
        return f"No {item} here, only commas: {words.instead}."
    if not all(items):
        return (
            "An item is empty (two commas together, or one at the start or end): "
            f"remove the extra comma, or write the {item} that was meant."
        )
    return None


TIME_EXAMPLE = "2026-12-31T23:59:00+01:00"
HOURS_EXAMPLE = '{"windows": [{"days": ["mon"], "from": "06:00", "to": "22:00"}]}'


def _json_errors(form: dict[str, str]) -> Errors:
    """A message for an active-hours field that is not JSON at all, saying where it breaks (the
    schema would only see a string where it wants an object)."""
    text = form.get("active_hours", "").strip()
    try:
        json.loads(text or "{}")
    except json.JSONDecodeError as exc:
        where = f"{exc.msg.lower()} at character {exc.pos + 1}"
        return {"active_hours": f"This is not JSON ({where}): write e.g. {HOURS_EXAMPLE}"}
    return {}


def rules_body(form: dict[str, str], current: dict[str, Any] | None = None) -> dict[str, Any]:
    """The body of `PUT /v1/devices/{id}/rules` that this form describes (blank fields left out).

    Rules the form has no field for (set through the API) are kept from `current`, since a PUT
    replaces all of them.
    """
    current = current or {}
    body = {k: v for k, v in current.items() if k not in MANAGED}
    if form.get("currency", "").strip():
        body["currency"] = form["currency"].strip()
    for name in SCALARS:
        if form.get(name, "").strip():
            body[name] = _number(form[name].strip())
    for prefix, name, key in PER_PERIOD:
        entries = [
            {"period": period, key: _number(part)}
            for period in PERIODS
            for part in _split(form.get(f"{prefix}_{period}", ""))
        ]
        if entries:
            body[name] = _in_stored_order(entries, current.get(name))
    for name in LISTS:
        text = form.get(name, "").strip()
        if text:
            body[name] = _list_of(text)
    if form.get("active_hours", "").strip():
        try:
            body["active_hours"] = json.loads(form["active_hours"])
        except json.JSONDecodeError:
            body["active_hours"] = form["active_hours"]  # refused, and named by _json_errors
    return body


def _in_stored_order(entries: list[dict[str, Any]], stored: list[Any] | None) -> list[Any]:
    """The stored limits when `entries` are just them regrouped by period, so an untouched form
    gives back the rules exactly as the API holds them."""

    def counted(items: list[Any]) -> Counter[tuple[Any, ...]]:
        return Counter(tuple(sorted(item.items())) for item in items)

    return stored if stored and counted(entries) == counted(stored) else entries


def rules_form(rules: dict[str, Any]) -> dict[str, str]:
    """The form's fields for rules as the API shows them: all of them, so that saving the form
    unchanged gives the same rules back (an allow-list of nothing is `(none)`, several limits
    of one period are `100, 5000`)."""
    form = {name: str(rules[name]) for name in ("currency", *SCALARS) if name in rules}
    for prefix, name, key in PER_PERIOD:
        for period in PERIODS:
            values = [str(e[key]) for e in rules.get(name) or [] if e["period"] == period]
            if values:
                form[f"{prefix}_{period}"] = ", ".join(values)
    for name in LISTS:
        if name in rules:
            form[name] = ", ".join(rules[name]) or NOTHING
    if "active_hours" in rules:
        form["active_hours"] = json.dumps(rules["active_hours"])
    return form


def validate_rules(
    form: dict[str, str], current: dict[str, Any] | None = None
) -> tuple[RulesIn | None, Errors]:
    """The validated rules, or the API's messages by form field.

    Rules that the form cannot show as they are stored are refused: the save would replace them
    with what the form showed, which may allow more than the owner chose.
    """
    if current and rules_body(rules_form(current), current) != current:
        return None, {FORM_ERROR: UNSHOWN}
    body = rules_body(form, current)
    errors = _list_errors(form, RULES_LISTS) | _json_errors(form)
    try:
        validated = RulesIn.model_validate(body)
    except ValidationError as exc:
        return None, _by_field(exc, body) | errors
    return (None, errors) if errors else (validated, {})


PASSED = "This time has passed: the mandate would never cover a payment. Give a later one, or none."


def validate_mandate(
    form: dict[str, str], now: datetime | None = None
) -> tuple[dict[str, Any] | None, Errors]:
    """The body of `POST /v1/devices/{id}/mandates`, or the API's messages by form field.

    An end already past at `now` is refused too: the API stores such a mandate, expired at
    once, which an owner who just gave it would take for a consent in force.
    """
    body: dict[str, Any] = {}
    for name in ("payee", "category", "valid_from", "valid_until"):
        if form.get(name, "").strip():
            body[name] = form[name].strip()
    body["max_amount"] = _number(form.get("max_amount", "").strip())
    period, amount = form.get("limit_period", ""), form.get("limit_amount", "").strip()
    if amount:
        body["limits"] = [{"period": period, "amount": _number(amount)}]
    try:
        validated = MandateCreate.model_validate(body).model_dump()
    except ValidationError as exc:
        return None, _by_field(exc, body, mandate=True)
    until = validated["valid_until"]
    if now is not None and until is not None and until <= now:
        return None, {"valid_until": PASSED}
    return validated, {}


def validate_top_up(form: dict[str, str]) -> tuple[TopUpCreate | None, Errors]:
    """The body of `POST /v1/devices/{id}/wallet/top-ups`, or the API's messages by field."""
    body = {
        "amount": _number(form.get("amount", "").strip()),
        "currency": form.get("currency", ""),
        "idempotency_key": form.get("idempotency_key", ""),
    }
    try:
        return TopUpCreate.model_validate(body), {}
    except ValidationError as exc:
        return None, _by_field(exc, body)


def failed_top_up(target: str, form: dict[str, str], errors: Errors) -> dict[str, str]:
    """What a refused top-up form shows again beside its amount: what was typed, and why."""
    error = errors.get("amount") or one_line(errors)
    return {"target": target, "amount": form.get("amount", ""), "error": error}


def one_line(errors: Errors) -> str:
    """The messages by field as one line, for a form whose page shows a single error."""
    return "; ".join(f"{field}: {text}" for field, text in errors.items())


SOURCE_FIELDS = ("priority", "floor", "credit_limit", "apr_bps")
POLICY_AMOUNTS = ("min_amount", "max_amount", "interval_days", "keep_at_least", "auto_accept_up_to")


def validate_source(form: dict[str, str]) -> tuple[dict[str, Any] | None, Errors]:
    """The body of `POST /v1/owners/me/funding-sources` (blank fields left out), or the API's
    messages by form field."""
    body: dict[str, Any] = {
        name: form.get(name, "").strip() for name in ("name", "kind", "currency")
    }
    for name in SOURCE_FIELDS:
        if form.get(name, "").strip():
            body[name] = _number(form[name].strip())
    try:
        return FundingSourceCreate.model_validate(body).model_dump(exclude_none=True), {}
    except ValidationError as exc:
        return None, _by_field(exc, body)


def validate_policy(form: dict[str, str]) -> tuple[dict[str, Any] | None, Errors]:
    """The body of `PUT /v1/owners/me/instalment-policy`, or the API's messages by form field."""
    body: dict[str, Any] = {"source": form.get("source", "")}
    for name in POLICY_AMOUNTS:
        if form.get(name, "").strip():
            body[name] = _number(form[name].strip())
    body["counts"] = [_number(part) for part in _split(form.get("counts", ""))]
    if form.get("categories", "").strip():
        body["categories"] = _list_of(form["categories"])
    errors = _list_errors(form, POLICY_LISTS)
    try:
        validated = InstalmentPolicyIn.model_validate(body).model_dump()
    except ValidationError as exc:
        return None, _by_field(exc, body) | errors
    return (None, errors) if errors else (validated, {})


def policy_form(policy: dict[str, Any] | None) -> dict[str, str]:
    """The policy form's fields for a policy as the API shows it (empty without one)."""
    if policy is None:
        return {}
    form = {name: str(policy[name]) for name in ("source", *POLICY_AMOUNTS)}
    form["counts"] = ", ".join(str(count) for count in policy["counts"])
    if policy["categories"] is not None:  # none: every category; [] offers in none
        form["categories"] = ", ".join(policy["categories"]) or NOTHING
    return form


def validate_dispute(form: dict[str, str]) -> tuple[dict[str, Any] | None, Errors]:
    """The body of `POST /v1/payments/{id}/disputes`, or the API's messages by form field."""
    body: dict[str, Any] = {"reason": form.get("reason", ""), "message": form.get("message", "")}
    if form.get("amount", "").strip():
        body["amount"] = _number(form["amount"].strip())
    try:
        return DisputeCreate.model_validate(body).model_dump(), {}
    except ValidationError as exc:
        return None, _by_field(exc, body)


def validate_response(form: dict[str, str]) -> tuple[ResponseCreate | None, Errors]:
    """The body of `POST /v1/disputes/{id}/response`, or the API's messages by form field."""
    body = {"decision": form.get("decision", ""), "message": form.get("message", "")}
    try:
        return ResponseCreate.model_validate(body), {}
    except ValidationError as exc:
        return None, _by_field(exc, body)


def _by_field(exc: ValidationError, body: dict[str, Any], mandate: bool = False) -> Errors:
    errors: Errors = {}
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        field = _field_of(loc, body, mandate)
        errors.setdefault(field, _message(error["type"], str(error["msg"]), loc))
    return errors


def _message(kind: str, text: str, loc: list[str]) -> str:
    """The schema's message, without the names of our classes ("... instance of WindowIn"),
    and saying where inside a JSON field it applies."""
    if kind == "timezone_aware" or kind.startswith("datetime_"):
        # a date alone is a day in some zone: say what a time the API takes looks like
        text += f". Write a date, a time and its zone, e.g. {TIME_EXAMPLE} (Z for UTC)"
    if kind in ("model_type", "dict_type"):
        text = "Input should be a JSON object"
        text += f", e.g. {HOURS_EXAMPLE}" if len(loc) == 1 else ""
    if loc and loc[0] == "active_hours" and len(loc) > 1:
        if kind == "string_pattern_mismatch" and loc[-1] in ("from", "to"):
            text = "Input should be a time as HH:MM, from 00:00 to 24:00"
        return f"{'.'.join(loc[1:])}: {text}"
    return text


def _field_of(loc: list[str], body: dict[str, Any], mandate: bool) -> str:
    if not loc:
        return FORM_ERROR
    name = loc[0]
    if name in ("limits", "max_payments") and len(loc) > 1 and loc[1].isdigit():
        if mandate:
            return "limit_amount" if loc[-1] == "amount" else "limit_period"
        entry = body[name][int(loc[1])]
        return f"{'limit' if name == 'limits' else 'count'}_{entry['period']}"
    return name
