"""Schemathesis against the live OpenAPI document of a real gateway (real SQLite, real ids).

The document is the one the app serves; its path parameters are narrowed to the seeded ids (the
owner's device, another owner's device, a mandate, an approval, a pay, a hold, the merchant, and an
id that names nothing), so that generated calls reach real resources. Every operation runs as each
kind of party (admin, owner, other owner, integrator, merchant) with a fixed number of examples
and `derandomize`, so a run is bounded and repeatable. Every answer must be:
- never a 5xx;
- valid against the schema the document gives for its status, where it gives one;
- for a 4xx, the contract's error body `{"error": {"code": snake_case, "message": str}}` (that
  the document describes it on every operation is `test_openapi_contract.py`'s);
- never a 2xx for a party that the contract never lets make the call (the table in
  `test_authorization_matrix.py`);
- free of every key and token handed out while seeding.
"""

from __future__ import annotations

import copy
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from tests.security.contract import PARAMS, WHO, expected, live_document
from tests.support.seeded import Seeded

MAX_EXAMPLES = 12  # per operation and party: the whole file stays well under 90 s
ERROR_CODE = re.compile(r"^[a-z][a-z0-9_]*$")

MISSING = "kym-missing-0000"
# Only the fuzzing phase (valid and invalid data), so that MAX_EXAMPLES bounds the run: the
# coverage phase alone adds about 50 cases per operation.
CONFIG = schemathesis.Config.from_dict(
    {"phases": {"coverage": {"enabled": False}, "examples": {"enabled": False}}}
)


def with_seeded_ids(doc: dict[str, Any]) -> dict[str, Any]:
    """The document with each path parameter narrowed to placeholders of the seeded ids it may
    name (`seed-device`, ...), swapped for the real ids when a case is sent."""
    choices = {
        "device": ["seed-device", "seed-other_device"],
        "payment": ["seed-payment", "seed-hold"],
        "merchant": ["seed-merchant", "seed-device"],
        "missing": [],
    }
    doc = copy.deepcopy(doc)
    for item in doc["paths"].values():
        for op in item.values():
            for parameter in op.get("parameters", []) if isinstance(op, dict) else []:
                if parameter.get("in") == "path":
                    what = PARAMS[parameter["name"]]  # an unknown name fails here, loudly
                    values = choices.get(what, [f"seed-{what}"])
                    parameter["schema"] = {"type": "string", "enum": [*values, MISSING]}
    return doc


def _load() -> Any:
    """The live document of a gateway on a throwaway data dir (the operations to test)."""
    with tempfile.TemporaryDirectory() as tmp:
        document = with_seeded_ids(live_document(Path(tmp)))
    return schemathesis.openapi.from_dict(document, config=CONFIG)


schema = _load()


def _path_ids(case: Any) -> set[str]:
    """What the case's path names, in the matrix's terms (for `expected`)."""
    named = set()
    for value in (case.path_parameters or {}).values():
        named.add("missing" if value == MISSING else value.removeprefix("seed-"))
    return named


def _check_error_body(response: Any, where: str) -> None:
    try:
        body = response.json()
    except ValueError:
        pytest.fail(f"a {response.status_code} whose body is not JSON: {where}")
    error = body.get("error") if isinstance(body, dict) else None
    assert isinstance(error, dict), f"not the contract's error body: {where}"
    assert isinstance(error.get("code"), str) and ERROR_CODE.match(error["code"]), where
    assert isinstance(error.get("message"), str), where


def _content_type(response: Any) -> str:
    value = response.headers.get("content-type") or [""]
    return str(value[0] if isinstance(value, list) else value)


def run_as(party: str, case: Any, seeded: Seeded) -> None:
    """One generated call as `party`, checked as the module docstring says."""
    named = _path_ids(case)
    case.path_parameters = {
        name: seeded.ids.get(value.removeprefix("seed-"), MISSING)
        for name, value in (case.path_parameters or {}).items()
    }
    case.headers = {**(case.headers or {}), **seeded.headers[party]}
    if case.operation.path == "/v1/events/stream" and party in ("owner", "other_owner", "merchant"):
        return  # an event stream never ends in-process (tests/events runs it on a real server)
    response = case.call(app=seeded.api.app)
    method, path = case.method.upper(), case.operation.path
    where = (
        f"{method} {case.formatted_path} as {party}: {response.status_code} {response.text[:300]}"
    )
    assert response.status_code < 500, where
    case.operation.validate_response(response, case=case)  # where the document has a schema
    if response.status_code >= 400:
        json_body = _content_type(response).startswith("application/json")
        assert json_body, f"an error without the contract's JSON error body: {where}"
        _check_error_body(response, where)
    want = expected(method, path, party, named) if f"{method} {path}" in WHO else None
    if isinstance(want, int):
        assert response.status_code >= 400, f"the contract answers {want}: {where}"
    for secret in seeded.secrets:
        assert secret not in response.text, f"a key or token in an answer: {where}"


def as_party(party: str) -> Any:
    """A schemathesis test of every operation, called as `party`."""

    @schema.parametrize()  # type: ignore[untyped-decorator]
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def test(case: Any, seeded: Seeded) -> None:
        run_as(party, case, seeded)

    return test


test_live_api_as_admin = as_party("admin")
test_live_api_as_owner = as_party("owner")
test_live_api_as_other_owner = as_party("other_owner")
test_live_api_as_integrator = as_party("integrator")
test_live_api_as_merchant = as_party("merchant")
