"""The console's forms for rules and mandates, and what every console form shares: the API's
own schemas validate them, and their messages go next to the fields that caused them.

A form becomes the JSON body the API would receive and goes through the same pydantic model
(`RulesIn`, `MandateCreate`; `money_forms` has the others), so an owner sees the API's own
message next to the field that caused it. Amounts are typed in the currency's major unit
("12.50" for 1250 cents) and read exactly by `money.parse_amount`, which refuses what is not an
amount in that currency with its own message; the API's bounds on them are said in the same
unit ("Write at least €0.01"). Counts are passed on as typed: "12.5" stays a string and the API
says it wants an integer, rather than the console guessing what was meant. The rules form shows
every rule the API can store, so that saving it changes only what the owner changed there; its
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

from gateway.console.money import AmountRefused, format_amount, major_units, parse_amount
from gateway.console.money import example as example_amount
from gateway.http.schemas import MandateCreate, RulesIn

PERIODS = ("day", "week", "month", "year")
LISTS = ("allowed_categories", "blocked_categories", "allowed_payees", "blocked_payees")
SCALARS = ("max_amount", "approval_above", "approval_ttl_seconds", "low_balance_alert")
AMOUNTS = ("max_amount", "approval_above", "low_balance_alert")  # the scalars that are money
LIMITS = tuple(f"limit_{period}" for period in PERIODS)
DECIMAL_COMMA = re.compile(r"[0-9],[0-9]")
SEVERAL = (
    "Write the decimals after a point, e.g. {example}; separate several limits with a comma "
    "and a space, e.g. 100, 5000."
)
FORM_ERROR = "_form"  # errors that belong to no single field
MANAGED = {"currency", *SCALARS, "limits", "max_payments", *LISTS, "active_hours"}
PER_PERIOD = (("limit", "limits", "amount"), ("count", "max_payments", "count"))
NOTHING = "(none)"  # an allow-list that allows nothing; an empty field allows everything
UNSHOWN = (
    "These rules hold something this form cannot show, so saving it could loosen them; "
    "change them through the API (PUT /v1/devices/{id}/rules)."
)
Errors = dict[str, str]


def number(text: str) -> int | str:
    """A count as typed: an integer when it is one, else the text (which the schema refuses)."""
    return int(text) if re.fullmatch(r"-?\d{1,20}", text) else text


def split(text: str) -> list[str]:
    """The items of a comma-separated field."""
    return [part.strip() for part in text.split(",") if part.strip()]


def amounts_into(
    body: dict[str, Any], form: dict[str, str], names: dict[str, str], currency: str
) -> Errors:
    """Each filled-in money field of `form` (by `names`: form field to body key) into `body` in
    minor units of `currency`; a message for each that is not an amount, which stays out."""
    errors: Errors = {}
    for field, key in names.items():
        text = form.get(field, "").strip()
        if text:
            try:
                body[key] = parse_amount(text, currency)
            except AmountRefused as exc:
                errors[field] = str(exc)
    return errors


def _nothing(text: str) -> bool:
    return text.strip().lower() == NOTHING  # no category or id has brackets: nothing stored is lost


def list_of(text: str) -> list[str]:
    """A list field as typed: `(none)` is the empty list."""
    return [] if _nothing(text) else split(text)


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


def list_errors(form: dict[str, str], fields: dict[str, ListField]) -> Errors:
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


def rules_currency(form_or_rules: dict[str, Any], wallet_currency: str) -> str:
    """The currency a rules form's amounts are in: the rules' own, else the wallet's."""
    return str(form_or_rules.get("currency") or "").strip().upper() or wallet_currency


def rules_body(
    form: dict[str, str], current: dict[str, Any] | None = None, wallet_currency: str = "EUR"
) -> tuple[dict[str, Any], Errors]:
    """The body of `PUT /v1/devices/{id}/rules` that this form describes (blank fields left
    out), and a message for each amount that is not one (left out of the body).

    Amounts are in the form's currency, else the wallet's. Rules the form has no field for
    (set through the API) are kept from `current`, since a PUT replaces all of them.
    """
    current = current or {}
    currency = rules_currency(form, wallet_currency)
    body = {k: v for k, v in current.items() if k not in MANAGED}
    if form.get("currency", "").strip():
        body["currency"] = form["currency"].strip()
    errors = amounts_into(body, form, {name: name for name in AMOUNTS}, currency)
    if form.get("approval_ttl_seconds", "").strip():
        body["approval_ttl_seconds"] = number(form["approval_ttl_seconds"].strip())
    for prefix, name, key in PER_PERIOD:
        entries = []
        for period in PERIODS:
            field = f"{prefix}_{period}"
            parts = _per_period(form.get(field, ""), field, currency, errors)
            entries += [{"period": period, key: part} for part in parts]
        if entries:
            body[name] = _in_stored_order(entries, current.get(name))
    for name in LISTS:
        text = form.get(name, "").strip()
        if text:
            body[name] = list_of(text)
    if form.get("active_hours", "").strip():
        try:
            body["active_hours"] = json.loads(form["active_hours"])
        except json.JSONDecodeError:
            body["active_hours"] = form["active_hours"]  # refused, and named by _json_errors
    return body, errors


def _per_period(text: str, field: str, currency: str, errors: Errors) -> list[int | str]:
    """The limits (amounts) or counts typed in one period's field; a refused amount leaves
    its message in `errors` and its field out."""
    if not field.startswith("limit_"):
        return [number(part) for part in split(text)]
    if DECIMAL_COMMA.search(text):  # "12,50": a decimal comma, or two limits 12 and 50?
        errors[field] = SEVERAL.format(example=example_amount(currency))
        return []
    try:
        return [parse_amount(part, currency) for part in split(text)]
    except AmountRefused as exc:
        errors[field] = str(exc)
        return []


def _in_stored_order(entries: list[dict[str, Any]], stored: list[Any] | None) -> list[Any]:
    """The stored limits when `entries` are just them regrouped by period, so an untouched form
    gives back the rules exactly as the API holds them."""

    def counted(items: list[Any]) -> Counter[tuple[Any, ...]]:
        return Counter(tuple(sorted(item.items())) for item in items)

    return stored if stored and counted(entries) == counted(stored) else entries


def rules_form(rules: dict[str, Any], wallet_currency: str = "EUR") -> dict[str, str]:
    """The form's fields for rules as the API shows them: all of them, so that saving the form
    unchanged gives the same rules back (amounts in the major unit of the rules' currency, else
    the wallet's, `12.50`; an allow-list of nothing is `(none)`, several limits of one period
    are `1.00, 50.00`)."""
    currency = rules_currency(rules, wallet_currency)

    def shown(key: str, value: int) -> str:
        return major_units(value, currency) if key in (*AMOUNTS, "amount") else str(value)

    form = {name: shown(name, rules[name]) for name in SCALARS if name in rules}
    if "currency" in rules:
        form["currency"] = str(rules["currency"])
    for prefix, name, key in PER_PERIOD:
        for period in PERIODS:
            values = [shown(key, e[key]) for e in rules.get(name) or [] if e["period"] == period]
            if values:
                form[f"{prefix}_{period}"] = ", ".join(values)
    for name in LISTS:
        if name in rules:
            form[name] = ", ".join(rules[name]) or NOTHING
    if "active_hours" in rules:
        form["active_hours"] = json.dumps(rules["active_hours"])
    return form


def validate_rules(
    form: dict[str, str], current: dict[str, Any] | None = None, wallet_currency: str = "EUR"
) -> tuple[RulesIn | None, Errors]:
    """The validated rules, or the API's messages by form field.

    Rules that the form cannot show as they are stored are refused: the save would replace them
    with what the form showed, which may allow more than the owner chose.
    """
    if current:
        shown = rules_body(rules_form(current, wallet_currency), current, wallet_currency)
        if shown != (current, {}):
            return None, {FORM_ERROR: UNSHOWN}
    body, typed = rules_body(form, current, wallet_currency)
    errors = list_errors(form, RULES_LISTS) | _json_errors(form) | typed
    money = Money((*AMOUNTS, *LIMITS), rules_currency(form, wallet_currency))
    try:
        validated = RulesIn.model_validate(body)
    except ValidationError as exc:
        return None, by_field(exc, body, money=money) | errors
    return (None, errors) if errors else (validated, {})


PASSED = "This time has passed: the mandate would never cover a payment. Give a later one, or none."


def validate_mandate(
    form: dict[str, str], currency: str, now: datetime | None = None
) -> tuple[dict[str, Any] | None, Errors]:
    """The body of `POST /v1/devices/{id}/mandates` (amounts typed in `currency`, the device's
    rules' or wallet's), or the API's messages by form field.

    An end already past at `now` is refused too: the API stores such a mandate, expired at
    once, which an owner who just gave it would take for a consent in force.
    """
    body: dict[str, Any] = {}
    for name in ("payee", "category", "valid_from", "valid_until"):
        if form.get(name, "").strip():
            body[name] = form[name].strip()
    names = {"max_amount": "max_amount", "limit_amount": "limit_amount"}
    typed = amounts_into(body, form, names, currency)
    if "limit_amount" in body:
        body["limits"] = [{"period": form.get("limit_period", ""), "amount": body["limit_amount"]}]
        del body["limit_amount"]
    money = Money(tuple(names), currency)
    try:
        validated = MandateCreate.model_validate(body).model_dump()
    except ValidationError as exc:
        return None, by_field(exc, body, mandate=True, money=money) | typed
    if typed:
        return None, typed
    until = validated["valid_until"]
    if now is not None and until is not None and until <= now:
        return None, {"valid_until": PASSED}
    return validated, {}


class Money(NamedTuple):
    """A form's money fields and the currency they are typed in, for the API's bounds on them."""

    fields: tuple[str, ...]
    currency: str


BOUNDS = (("ge", "at least"), ("gt", "more than"), ("le", "at most"), ("lt", "less than"))


def by_field(
    exc: ValidationError, body: dict[str, Any], mandate: bool = False, money: Money | None = None
) -> Errors:
    """The schema's messages by the form field that caused each (the first per field); a bound
    on an amount is said in the currency's major unit, as the person typed it."""
    errors: Errors = {}
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        field = _field_of(loc, body, mandate)
        message = _message(error["type"], str(error["msg"]), loc)
        if money and field in money.fields:
            bound = error.get("ctx") or {}
            for key, words in BOUNDS:
                if isinstance(bound.get(key), int):
                    message = f"Write {words} {format_amount(bound[key], money.currency)}."
        errors.setdefault(field, message)
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
