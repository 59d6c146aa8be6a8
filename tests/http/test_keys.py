"""API keys (contract section 10): add, list, delete, never the last; the admin has none."""

from __future__ import annotations

import base64
import json
import threading
from dataclasses import replace
from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient

from gateway import keys
from gateway.context import Context
from gateway.errors import Conflict
from gateway.http.app import create_app
from gateway.parties import Party, hash_api_key
from tests.support.gateway import ADMIN, bearer, create


def keys_of(api: TestClient, key: str, **params: Any) -> dict[str, Any]:
    response = api.get("/v1/keys", headers=bearer(key), params=params)
    assert response.status_code == 200, response.text
    return dict(response.json())


def test_a_party_adds_lists_and_deletes_its_keys(api: TestClient) -> None:
    owner = create(api, "owners", {"name": "Ada", "timezone": "UTC"})
    first = owner["api_key"]
    [only] = keys_of(api, first)["items"]
    assert only["prefix"] == first[:12] and only["last_used_at"] is not None
    added = api.post("/v1/keys", headers=bearer(first))
    assert added.status_code == 201
    second = added.json()
    assert set(second) == {"id", "api_key"} and second["api_key"] != first
    assert api.get("/v1/keys", headers=bearer(second["api_key"])).status_code == 200
    listed = keys_of(api, first)
    assert [k["id"] for k in listed["items"]] == [second["id"], only["id"]]
    assert listed["next_cursor"] is None
    assert all(set(k) == {"id", "prefix", "created_at", "last_used_at"} for k in listed["items"])
    assert first not in str(listed) and second["api_key"] not in str(listed)
    deleted = api.delete(f"/v1/keys/{only['id']}", headers=bearer(second["api_key"]))
    assert deleted.status_code == 204 and deleted.content == b""
    refused = api.get("/v1/keys", headers=bearer(first))
    assert refused.status_code == 401
    assert refused.json()["error"]["code"] == "unauthorized"


def test_the_last_key_cannot_be_deleted(api: TestClient) -> None:
    merchant = create(api, "merchants", {"name": "Shell", "category": "fuel"})
    [only] = keys_of(api, merchant["api_key"])["items"]
    response = api.delete(f"/v1/keys/{only['id']}", headers=bearer(merchant["api_key"]))
    assert response.status_code == 409
    assert response.json()["error"]["code"] == "last_key"
    assert (
        api.get("/v1/merchants/me/wallet", headers=bearer(merchant["api_key"])).status_code == 200
    )


def test_another_partys_key_is_404_and_the_admin_is_403(api: TestClient) -> None:
    ada = create(api, "owners", {"name": "Ada", "timezone": "UTC"})
    bob = create(api, "integrators", {"name": "Bob"})
    api.post("/v1/keys", headers=bearer(ada["api_key"]))
    [_, ada_first] = keys_of(api, ada["api_key"])["items"]
    stolen = api.delete(f"/v1/keys/{ada_first['id']}", headers=bearer(bob["api_key"]))
    assert stolen.status_code == 404
    assert len(keys_of(api, ada["api_key"])["items"]) == 2
    assert [k["id"] for k in keys_of(api, bob["api_key"])["items"]] != [ada_first["id"]]
    for method, path in (("POST", "/v1/keys"), ("GET", "/v1/keys"), ("DELETE", "/v1/keys/x")):
        response = api.request(method, path, headers=ADMIN)
        assert response.status_code == 403, (method, path)
        assert response.json()["error"]["code"] == "forbidden"


def test_keys_page_newest_first_without_repeats(api: TestClient) -> None:
    owner = create(api, "owners", {"name": "Ada", "timezone": "UTC"})
    key = owner["api_key"]
    for _ in range(4):
        assert api.post("/v1/keys", headers=bearer(key)).status_code == 201
    everything = [k["id"] for k in keys_of(api, key)["items"]]
    seen: list[str] = []
    page = keys_of(api, key, limit=2)
    while True:
        seen += [k["id"] for k in page["items"]]
        if page["next_cursor"] is None:
            break
        assert len(page["items"]) == 2
        page = keys_of(api, key, limit=2, cursor=page["next_cursor"])
    assert seen == everything and len(seen) == 5
    created = [k["created_at"] for k in keys_of(api, key)["items"]]
    assert created == sorted(created, reverse=True)
    forged = [
        base64.urlsafe_b64encode(json.dumps([at, "key_x"]).encode()).decode()
        for at in ("9999-12-31T23:59:59-14:00", "2026-01-01T00:00:00", 5)
    ]
    refused: list[dict[str, str | int]] = [{"limit": 0}, {"limit": 201}]
    refused += [{"cursor": c} for c in ("not-a-cursor", "W10", *forged)]
    for params in refused:
        response = api.get("/v1/keys", headers=bearer(key), params=params)
        assert response.status_code == 422, params
        assert response.json()["error"]["code"] == "invalid_request"


def test_keys_are_stored_only_as_hashes(api: TestClient, ctx: Context) -> None:
    owner = create(api, "owners", {"name": "Ada", "timezone": "UTC"})
    added = api.post("/v1/keys", headers=bearer(owner["api_key"])).json()
    with ctx.db.read() as conn:
        rows = [dict(r) for r in conn.exec_driver_sql("SELECT * FROM api_keys").mappings()]
    stored = str(rows)
    for key in (owner["api_key"], added["api_key"]):
        assert key not in stored
        assert hash_api_key(key) in stored
        assert key[12:24] not in stored


def test_a_deleted_key_is_refused_by_every_worker_at_once(api: TestClient, ctx: Context) -> None:
    """Two apps on one database stand for two workers; the second never saw the deletion."""
    owner = create(api, "owners", {"name": "Ada", "timezone": "UTC"})
    spare = api.post("/v1/keys", headers=bearer(owner["api_key"])).json()
    with TestClient(create_app(ctx)) as other_worker:
        for _ in range(3):
            assert other_worker.get("/v1/keys", headers=bearer(spare["api_key"])).status_code == 200
        gone = api.delete(f"/v1/keys/{spare['id']}", headers=bearer(owner["api_key"]))
        assert gone.status_code == 204
        assert other_worker.get("/v1/keys", headers=bearer(spare["api_key"])).status_code == 401


def test_last_used_at_is_written_at_most_once_a_minute(api: TestClient, ctx: Context) -> None:
    owner = create(api, "owners", {"name": "Ada", "timezone": "UTC"})
    key = owner["api_key"]
    first = keys_of(api, key)["items"][0]["last_used_at"]
    assert keys_of(api, key)["items"][0]["last_used_at"] == first
    later = ctx.clock() + timedelta(seconds=61)
    with TestClient(create_app(replace(ctx, clock=lambda: later))) as after_a_minute:
        assert keys_of(after_a_minute, key)["items"][0]["last_used_at"] == later.isoformat()


def race_deletions(ctx: Context, party: Party, key_ids: list[str]) -> list[str]:
    """Delete each key from its own thread, all at once; what each deletion came to."""
    barrier = threading.Barrier(len(key_ids))
    outcomes: list[str] = []

    def delete(key_id: str) -> None:
        barrier.wait()
        try:
            keys.delete_key(ctx, party, key_id)
            outcomes.append("deleted")
        except Conflict as exc:
            outcomes.append(exc.reason)

    threads = [threading.Thread(target=delete, args=(key_id,)) for key_id in key_ids]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return outcomes


def test_two_deletions_at_once_never_remove_both_keys(api: TestClient, ctx: Context) -> None:
    for round_ in range(5):
        owner = create(api, "owners", {"name": f"Ada {round_}", "timezone": "UTC"})
        api.post("/v1/keys", headers=bearer(owner["api_key"]))
        ids = [k["id"] for k in keys_of(api, owner["api_key"])["items"]]
        outcomes = race_deletions(ctx, Party(kind="owner", id=owner["id"]), ids)
        assert sorted(outcomes) == ["deleted", "last_key"]
