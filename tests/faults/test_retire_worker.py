"""`kym retire-worker`: going from two gateway workers to one on a shared Mosquitto loses no
order. Mosquitto deals an offline persistent member of the share group its turn for as long as
its session lives, so what was dealt to the identity nobody runs any more waits until it is
retired (docs/durability.md)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.faults.fleet import (
    Device,
    Stream,
    all_acknowledged,
    assert_decided_once,
    final_results,
    running_fleet,
)
from tests.faults.processes import Gateway, Mosquitto, kym

pytestmark = [pytest.mark.slow, pytest.mark.mosquitto]


def test_retiring_a_worker_identity_decides_its_share_and_deals_it_no_more(
    mosquitto: Mosquitto, tmp_path: Path
) -> None:
    database = f"sqlite:///{tmp_path / 'kym.db'}"
    data = tmp_path / "data"
    two = Gateway(data, database, broker_url=mosquitto.url, workers=2)
    with running_fleet(two, tmp_path / "devices", 4, mosquitto.port, None) as (fleet, shop):
        pay_for(fleet, shop, 1.0)  # both identities join the share group
        two.stop()
        pay_for(fleet, shop, 1.5)  # dealt to both sessions while no gateway runs
        one = Gateway(data, database, broker_url=mosquitto.url, workers=1)
        one.start()
        try:
            one.wait_healthy()
            time.sleep(3)  # kym-gateway-0 decides its share; kym-gateway-1's waits
            orders = all_acknowledged(fleet, "the broker stayed up")
            waiting = {d.id: orders[d.id] - set(final_results(d)) for d in fleet}
            assert sum(map(len, waiting.values())) > 0, "nothing was left with kym-gateway-1"

            retired = kym(
                "retire-worker", "--data-dir", str(data), "--database-url", database,
                "--broker-url", mosquitto.url, "--worker-index", "1", "--idle", "1",
            )  # fmt: skip
            assert retired.returncode == 0, retired.stderr
            assert "kym-gateway-1 retired" in retired.stdout

            pay_for(fleet, shop, 1.5)  # all dealt to kym-gateway-0 now
            orders = all_acknowledged(fleet, "the broker stayed up")
            assert_decided_once(fleet, one, database, orders, "retire-worker", timeout_s=30)
        finally:
            one.stop()


def test_retire_worker_says_what_it_needs(tmp_path: Path) -> None:
    missing = kym("retire-worker", "--data-dir", str(tmp_path / "none"), "--worker-index", "1")
    assert missing.returncode == 2
    assert "no gateway data dir" in missing.stderr and "Traceback" not in missing.stderr
    assert kym("mosquitto-config", "--data-dir", str(tmp_path / "data"), "--listen",
               "127.0.0.1:1", "--out", str(tmp_path / "conf")).returncode == 0  # fmt: skip
    no_broker = kym("retire-worker", "--data-dir", str(tmp_path / "data"), "--worker-index", "1")
    assert no_broker.returncode == 2 and "--broker-url" in no_broker.stderr
    unreachable = kym(
        "retire-worker", "--data-dir", str(tmp_path / "data"), "--worker-index", "1",
        "--broker-url", "mqtts://127.0.0.1:1",
    )  # fmt: skip
    assert unreachable.returncode == 2
    assert "is the broker at 127.0.0.1:1 up" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr


def pay_for(fleet: list[Device], shop: str, seconds: float) -> None:
    """Every device pays `shop` about every 0.1 s for `seconds`."""
    stream = Stream(fleet, shop, 0.1)
    stream.start()
    time.sleep(seconds)
    stream.stop()
