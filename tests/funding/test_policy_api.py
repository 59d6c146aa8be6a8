"""Contract section 8: the owner's instalment policy over HTTP (SQLite and PostgreSQL)."""

from __future__ import annotations

from functools import partial
from typing import Any

from tests.support.concurrency import at_once
from tests.support.funding import source
from tests.support.world import World

URL = "/v1/owners/me/instalment-policy"


def test_a_policy_is_stored_with_its_defaults_shown_replaced_and_removed(world: World) -> None:
    car = world.device("car")
    line = source(world, car.owner, kind="credit_line", credit_limit=100_000, apr_bps=1_200)
    assert world.api.get(URL, headers=car.owner).status_code == 404
    body = {
        "source": line["id"],
        "min_amount": 5_000,
        "max_amount": 50_000,
        "counts": [3, 6],
        "interval_days": 30,
    }
    put = world.api.put(URL, headers=car.owner, json=body)
    assert put.status_code == 200, put.text
    assert put.json() == {
        **body,
        "keep_at_least": 0,
        "categories": None,
        "auto_accept_up_to": 0,
    }
    assert world.api.get(URL, headers=car.owner).json() == put.json()
    changed = {**body, "counts": [12], "categories": ["maintenance"], "keep_at_least": 20_000}
    assert world.api.put(URL, headers=car.owner, json=changed).json()["counts"] == [12]
    shown = world.api.get(URL, headers=car.owner).json()
    assert shown["categories"] == ["maintenance"] and shown["keep_at_least"] == 20_000
    assert world.api.delete(URL, headers=car.owner).status_code == 204
    assert world.api.get(URL, headers=car.owner).status_code == 404
    assert world.api.delete(URL, headers=car.owner).status_code == 204


def test_bad_policies_are_422(world: World) -> None:
    car = world.device("car")
    line = source(world, car.owner, kind="credit_line", credit_limit=100_000)
    account = source(world, car.owner)
    stranger = world.device("stranger")
    theirs = source(world, stranger.owner, kind="credit_line", credit_limit=100)
    good: dict[str, Any] = {
        "source": line["id"],
        "min_amount": 10,
        "max_amount": 10,
        "counts": [2, 24],
        "interval_days": 7,
    }
    assert world.api.put(URL, headers=car.owner, json=good).status_code == 200
    bad: list[dict[str, Any]] = [
        {"source": account["id"]},  # a balance source
        {"source": theirs["id"]},  # another owner's line
        {"source": "fs_missing"},
        {"min_amount": 11},  # above max_amount
        {"counts": []},
        {"counts": [1]},
        {"counts": [25]},
        {"counts": [3, 3]},
        {"interval_days": 6},
        {"interval_days": 93},
        {"keep_at_least": -1},
        {"auto_accept_up_to": 1.5},
        {"limit": 5},  # an unknown field
    ]
    for change in bad:
        response = world.api.put(URL, headers=car.owner, json={**good, **change})
        assert response.status_code == 422, (change, response.text)
    assert world.api.get(URL, headers=car.owner).json()["counts"] == [2, 24]  # unchanged


def test_the_same_policy_put_four_times_at_once_is_answered_four_times(world: World) -> None:
    car = world.device("car")
    line = source(world, car.owner, kind="credit_line", credit_limit=100_000)
    body = {"source": line["id"], "min_amount": 100, "max_amount": 10_000, "counts": [3]}
    for days in (30, 14, 7):
        policy = {**body, "interval_days": days}
        answers = at_once([partial(world.api.put, URL, headers=car.owner, json=policy)] * 4)
        assert [a.status_code for a in answers] == [200] * 4, [a.text for a in answers]
        assert world.api.get(URL, headers=car.owner).json()["interval_days"] == days
