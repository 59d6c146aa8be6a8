"""Webhook targets (contract section 7): never anything but http(s); without
`--webhook-allow-private`, no host that does not resolve or resolves to any loopback, private,
link-local or otherwise non-public address, checked when added and at every delivery, and the
delivery connects to the address it checked."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import replace

import pytest
from fastapi.testclient import TestClient

from gateway.context import Context
from gateway.events import ssrf
from gateway.events.delivery import DeliveryWorker
from gateway.http.app import create_app
from tests.events.helpers import add_webhook, deliveries, run_rounds
from tests.events.receiver import receiver
from tests.support.world import World


@pytest.fixture
def strict(ctx: Context) -> Context:
    """The context as `kym serve` runs it without --webhook-allow-private."""
    return replace(ctx, settings=ctx.settings.model_copy(update={"webhook_allow_private": False}))


@pytest.fixture
def strict_api(strict: Context) -> Iterator[TestClient]:
    with TestClient(create_app(strict)) as client:
        yield client


def refusal(api: TestClient, headers: dict[str, str], url: str) -> str:
    response = api.post("/v1/webhooks", json={"url": url}, headers=headers)
    assert response.status_code == 422, response.text
    return str(response.json()["error"]["code"])


@pytest.mark.parametrize("url", ["ftp://example.com/x", "file:///etc/passwd", "gopher://a/", "//x"])
def test_only_http_and_https_even_when_private_is_allowed(world: World, url: str) -> None:
    car = world.device("car", top_up=0)
    assert refusal(world.api, car.owner, url) == "webhook_url_not_allowed"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://localhost:8080/hook",  # a DNS name that resolves to 127.0.0.1
        "http://[::1]/hook",
        "http://10.1.2.3/",
        "http://192.168.0.1/",
        "http://169.254.169.254/latest/meta-data/",  # the cloud metadata address
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://[::ffff:127.0.0.1]/",
        "http://[64:ff9b::a9fe:a9fe]/latest/meta-data/",  # NAT64's form of 169.254.169.254
        "http://[64:ff9b::a00:1]/",  # NAT64's form of 10.0.0.1
        "http://[64:ff9b:1::a00:1]/",  # NAT64's local-use prefix
        "http://[fec0::1]/",  # site-local
        "http://[::ffff:0:a00:1]/",  # the IPv4-translated form of 10.0.0.1
        "https://no-such-host.invalid/hook",  # does not resolve
    ],
)
def test_private_and_unresolvable_hosts_are_refused(
    world: World, strict_api: TestClient, url: str
) -> None:
    car = world.device("car", top_up=0)
    assert refusal(strict_api, car.owner, url) == "webhook_url_not_allowed"


def test_every_address_of_a_name_must_be_public() -> None:
    def resolver(addresses: list[str]) -> ssrf.Resolver:
        return lambda host, port: addresses

    public = ssrf.check_url(
        "https://hooks.example.com/x", allow_private=False, resolver=resolver(["93.184.216.34"])
    )
    assert public.connect_url() == "https://93.184.216.34/x" and public.host == "hooks.example.com"
    with pytest.raises(ssrf.UrlNotAllowed, match="not a public address") as refused:
        ssrf.check_url(
            "https://hooks.example.com/x",
            allow_private=False,
            resolver=resolver(["93.184.216.34", "10.20.30.40"]),
        )
    assert "10.20.30.40" not in str(refused.value)


def test_a_refusal_says_neither_where_a_name_points_nor_whether_it_exists(
    world: World, strict_api: TestClient
) -> None:
    """Any owner may try any name: the answer for a private one was its address (a view into
    the gateway's own DNS), and it differed from the answer for a name that does not exist."""
    car = world.device("car", top_up=0)
    answers = []
    for host in ("localhost", "no-such-host.invalid"):
        response = strict_api.post(
            "/v1/webhooks", json={"url": f"http://{host}/"}, headers=car.owner
        )
        assert response.status_code == 422
        answers.append(response.json()["error"]["message"].replace(host, "HOST"))
    assert answers[0] == answers[1]
    assert "127.0.0.1" not in answers[0] and "::1" not in answers[0]


def test_delivery_connects_to_the_address_it_checked(world: World, strict: Context) -> None:
    """`hooks.test` resolves (for this worker) to 127.0.0.2, which this test counts as public:
    the POST reaches the server there with the name in its Host header, and no second lookup."""
    car = world.device("car")
    with receiver(host="127.0.0.2") as hook:
        lookups: list[str] = []

        def resolver(host: str, port: int) -> list[str]:
            lookups.append(host)
            return ["127.0.0.2"] if host == "hooks.test" else []

        url = f"http://hooks.test:{hook.port}/hook"
        webhook = add_webhook(world.api, car.owner, url, ["device.status_changed"])
        assert car.act("suspend").status_code == 200
        only_127_0_0_2 = lambda a: a == ipaddress.ip_address("127.0.0.2")  # noqa: E731
        run_rounds(DeliveryWorker(strict, resolver=resolver, public=only_127_0_0_2))
        (got,) = hook.received
    assert got.headers["host"] == f"hooks.test:{hook.port}" and lookups == ["hooks.test"]
    assert deliveries(world.api, car.owner, webhook["id"])[0]["delivered"] is True


def test_a_name_that_turns_private_is_refused_at_delivery(world: World, strict: Context) -> None:
    car = world.device("car")
    with receiver() as hook:
        url = f"http://localhost:{hook.port}/hook"  # added while private targets were allowed
        webhook = add_webhook(world.api, car.owner, url, ["device.status_changed"])
        assert car.act("suspend").status_code == 200
        run_rounds(DeliveryWorker(strict))
        assert hook.received == []
    (attempt,) = deliveries(world.api, car.owner, webhook["id"])
    assert attempt["status_code"] is None and attempt["attempt"] == 1
    assert "not a public address" in attempt["error"] and "127.0.0.1" not in attempt["error"]


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("2606:4700:4700::1111", True),  # a global unicast address
        ("64:ff9b::5db8:d822", True),  # NAT64's form of 93.184.216.34
        ("64:ff9b::a00:1", False),
        ("::ffff:0:5db8:d822", True),  # IPv4-translated 93.184.216.34
        ("fec0::1", False),
        ("64:ff9b:1::5db8:d822", False),
        ("fc00::1", False),
        ("fe80::1", False),
        ("ff02::1", False),
    ],
)
def test_ipv6_is_public_only_as_global_unicast_or_as_the_ipv4_it_carries(
    address: str, public: bool
) -> None:
    assert ssrf.is_public(ipaddress.ip_address(address)) is public


def test_an_internationalised_name_is_delivered_under_its_idna_form(
    world: World, strict: Context
) -> None:
    """`bücher.test` is resolved, checked and sent (Host) as `xn--bcher-kva.test`; as typed it
    raised UnicodeEncodeError in httpx at every attempt, which was neither logged nor counted,
    and the attempt came back for ever."""
    car = world.device("car")
    with receiver(host="127.0.0.2") as hook:
        lookups: list[str] = []

        def resolver(host: str, port: int) -> list[str]:
            lookups.append(host)
            return ["127.0.0.2"] if host == "xn--bcher-kva.test" else []

        url = f"http://BÜCHER.test:{hook.port}/hook"
        webhook = add_webhook(world.api, car.owner, url, ["device.status_changed"])
        assert webhook["url"] == url
        assert car.act("suspend").status_code == 200
        only_127_0_0_2 = lambda a: a == ipaddress.ip_address("127.0.0.2")  # noqa: E731
        run_rounds(DeliveryWorker(strict, resolver=resolver, public=only_127_0_0_2), rounds=1)
        got = hook.received
    assert [g.headers["host"] for g in got] == [f"xn--bcher-kva.test:{hook.port}"]
    assert lookups == ["xn--bcher-kva.test"]
    (attempt,) = deliveries(world.api, car.owner, webhook["id"])
    assert attempt["delivered"] is True


def test_a_host_name_idna_cannot_encode_is_refused(world: World) -> None:
    car = world.device("car", top_up=0)
    assert refusal(world.api, car.owner, "http://\u2603.example/hook") == "webhook_url_not_allowed"
