"""Access rules: devices act only as themselves, gateways serve all, and grants never widen."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gateway.broker.acl import (
    Acl,
    AclPolicy,
    Grants,
    filter_covers,
    is_valid_filter,
    parse_subscription,
    topic_matches,
)

ORDERS, RESULTS = "kym/v1/devices/{}/orders", "kym/v1/devices/{}/results"


@pytest.fixture
def acl() -> Acl:
    return Acl()


def test_a_device_publishes_only_its_own_orders(acl: Acl) -> None:
    assert acl.may_publish("dev-a", ORDERS.format("dev-a"))
    assert not acl.may_publish("dev-a", ORDERS.format("dev-b"))
    assert not acl.may_publish("dev-a", RESULTS.format("dev-a"))
    assert not acl.may_publish("dev-a", ORDERS.format("dev-a") + "/more")


def test_a_device_subscribes_only_to_exactly_its_own_results(acl: Acl) -> None:
    assert acl.may_subscribe("dev-a", RESULTS.format("dev-a"))
    for refused in (
        "$share/g/" + RESULTS.format("dev-a"),
        "$share/kym/kym/v1/devices/+/orders",
        "$share/kym/" + ORDERS.format("dev-a"),
        "#",
        "+/v1/devices/dev-a/results",
        "kym/v1/devices/+/results",
        "kym/v1/devices/dev-a/#",
        "kym/v1/devices/dev-a/+",
        RESULTS.format("dev-b"),
        "$share/g/#",
        "$share//" + RESULTS.format("dev-a"),
        "$share/g",
        RESULTS.format("dev-a") + "/#",
        "kym/v1/devices/dev-a/results/x",
    ):
        assert not acl.may_subscribe("dev-a", refused), refused


def test_a_device_receives_only_its_own_results(acl: Acl) -> None:
    assert acl.may_receive("dev-a", RESULTS.format("dev-a"))
    assert not acl.may_receive("dev-a", RESULTS.format("dev-b"))
    assert not acl.may_receive("dev-a", ORDERS.format("dev-a"))


def test_a_gateway_reads_all_orders_and_writes_all_results(acl: Acl) -> None:
    assert acl.may_subscribe("kym-gateway-0", "kym/v1/devices/+/orders")
    assert acl.may_subscribe("kym-gateway-0", "$share/kym/kym/v1/devices/+/orders")
    assert acl.may_subscribe("kym-gateway-0", ORDERS.format("dev-a"))
    assert acl.may_publish("kym-gateway-3", RESULTS.format("dev-b"))
    assert acl.may_receive("kym-gateway-3", ORDERS.format("dev-b"))
    assert not acl.may_subscribe("kym-gateway-0", "#")
    assert not acl.may_subscribe("kym-gateway-0", "kym/v1/devices/#")
    assert not acl.may_publish("kym-gateway-0", ORDERS.format("dev-a"))
    assert not acl.may_publish("kym-gateway-0", "kym/v1/devices/dev-a/results/x")
    for not_a_gateway in ("kym-gateway-", "kym-gateway-1x", "kym-gateway-٣"):  # as Mosquitto's
        assert not acl.may_subscribe(not_a_gateway, "kym/v1/devices/+/orders"), not_a_gateway


def test_gateways_can_be_named_instead_of_prefixed() -> None:
    acl = Acl(AclPolicy(gateway_identities=frozenset({"worker-1"}), gateway_prefix=None))
    assert acl.may_publish("worker-1", RESULTS.format("dev-a"))
    assert not acl.may_publish("kym-gateway-0", RESULTS.format("dev-a"))
    assert acl.may_publish("kym-gateway-0", ORDERS.format("kym-gateway-0"))  # just a device


@pytest.mark.parametrize("identity", ["", "+", "#", "a/b", "a\x00", "x" * 65, "dév"])
def test_an_identity_that_is_not_a_plain_id_gets_nothing(acl: Acl, identity: str) -> None:
    assert not acl.may_publish(identity, ORDERS.format(identity))
    assert not acl.may_subscribe(identity, RESULTS.format(identity))
    assert not acl.may_publish(identity, ORDERS.format("dev-a"))


def test_dollar_topics_are_not_matched_by_first_level_wildcards() -> None:
    assert not topic_matches("#", "$SYS/x")
    assert not topic_matches("+/x", "$SYS/x")
    assert topic_matches("$SYS/#", "$SYS/x")
    assert not filter_covers("#", "$SYS/#")
    assert filter_covers("$SYS/#", "$SYS/+")


@pytest.mark.parametrize(
    "topic_filter, topic, expected",
    [
        ("a/#", "a", True),
        ("a/#", "a/b/c", True),
        ("a/+", "a", False),
        ("a/+", "a/", True),
        ("+/+", "/x", True),
        ("#", "/", True),
        ("a/b", "a/b", True),
        ("a/b", "a/b/c", False),
    ],
)
def test_topic_matching(topic_filter: str, topic: str, expected: bool) -> None:
    assert topic_matches(topic_filter, topic) is expected


def test_shared_subscriptions_are_parsed() -> None:
    assert parse_subscription("$share/kym/kym/v1/+/orders") == ("kym", "kym/v1/+/orders")
    assert parse_subscription("a/+") == (None, "a/+")
    for bad in ("$share/", "$share/g", "$share/g/", "$share/+/a", "a/#/b", "a+", ""):
        assert parse_subscription(bad) is None, bad


LEVELS = ["a", "", "$s", "+", "#"]
filters = (
    st.lists(st.sampled_from(LEVELS), min_size=1, max_size=3).map("/".join).filter(is_valid_filter)
)


@given(filters, filters)
def test_a_filter_is_covered_exactly_when_every_topic_it_matches_is_granted(
    grant: str, topic_filter: str
) -> None:
    # Topics over the filters' literals plus one they never name are enough to find a
    # counterexample whenever one exists (filters here have at most three levels).
    topics = [
        "/".join(t) for n in range(1, 5) for t in itertools.product(["a", "", "$s", "z"], repeat=n)
    ]
    widened = any(topic_matches(topic_filter, t) and not topic_matches(grant, t) for t in topics)
    assert filter_covers(grant, topic_filter) is not widened


def test_a_single_level_grant_never_grants_a_multi_level_filter() -> None:
    acl = Acl(AclPolicy(device=Grants(read=("fleet/+",), write=("fleet/%u",))))
    assert acl.may_subscribe("dev-a", "fleet/+")
    assert acl.may_subscribe("dev-a", "fleet/x")
    for wider in ("fleet/#", "#", "+/+", "fleet/+/x", "$share/g/fleet/#", "$share/g/fleet/+"):
        assert not acl.may_subscribe("dev-a", wider), wider
    assert acl.may_publish("dev-a", "fleet/dev-a")
    assert not acl.may_publish("dev-a", "fleet/dev-b")
