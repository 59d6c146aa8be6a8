"""The order journal: an order is on disk before it is sent, and a crash re-sends it as it was."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from devices.sdk import Journal
from tests.sdk.gatewayside import GatewaySide
from tests.support.stack import Http

ROOT = Path(__file__).resolve().parents[2]


def test_a_device_killed_after_sending_resends_the_identical_jws_by_itself(http: Http) -> None:
    identity, _ = http.provision("car")
    gateway_side = GatewaySide(http.stack)
    command = [
        sys.executable,
        "-m",
        "tests.sdk.crashing_device",
        str(identity.paths.root),
        str(http.stack.port),
    ]
    with subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True) as process:
        try:
            assert process.stdout is not None
            order_id = process.stdout.readline().strip()
            first = gateway_side.next_order(timeout_s=10)
        finally:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(10)
    assert process.returncode == -signal.SIGKILL
    with http.client(identity) as restarted:
        assert [o for o, _ in restarted.journal.unfinished()] == [order_id]
        restarted.connect()  # re-sends what the journal holds unfinished, by itself
        again = gateway_side.next_order(timeout_s=10)
    gateway_side.close()
    assert again.topic == first.topic
    assert again.payload == first.payload  # byte for byte: a replay, not a second payment


def test_a_final_result_finishes_an_order_across_restarts(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    journal.record_order("o-1", "jws-1")
    journal.record_order("o-2", "jws-2")
    journal.record_order("o-3", "jws-3")
    assert journal.record_final("o-1", "approved")
    assert not journal.record_final("o-1", "approved")  # a redelivered result
    journal.close()
    reopened = Journal(tmp_path / "journal.jsonl")
    assert reopened.unfinished() == [("o-2", "jws-2"), ("o-3", "jws-3")]
    assert reopened.next_sequence() == 4
    reopened.close()


def test_an_order_id_is_never_used_twice(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl")
    journal.record_order("o-1", "jws-1")
    journal.record_final("o-1", "approved")
    try:
        journal.record_order("o-1", "another jws")
    except ValueError:
        pass
    else:
        raise AssertionError("the journal accepted an order id twice")
    finally:
        journal.close()


def test_a_torn_last_line_is_cut_off_and_the_journal_goes_on(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal(path)
    journal.record_order("o-1", "jws-1")
    journal.close()
    with open(path, "ab") as file:
        file.write(b'{"order":"o-2","seq":2,"jw')  # the power went here
    reopened = Journal(path)
    reopened.record_order("o-3", "jws-3")
    reopened.close()
    again = Journal(path)
    assert again.unfinished() == [("o-1", "jws-1"), ("o-3", "jws-3")]
    again.close()


def test_compaction_keeps_orders_in_flight_and_the_sequence(tmp_path: Path) -> None:
    path = tmp_path / "journal.jsonl"
    journal = Journal(path, fsync=False)
    for n in range(1, 101):
        journal.record_order(f"o-{n}", f"jws-{n}")
        if n != 50:
            journal.record_final(f"o-{n}", "approved")
    journal.compact()
    journal.record_order("o-101", "jws-101")
    journal.close()
    reopened = Journal(path)
    assert reopened.unfinished() == [("o-50", "jws-50"), ("o-101", "jws-101")]
    assert reopened.next_sequence() == 102
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    reopened.close()


def test_a_device_resends_an_unfinished_order_by_itself_on_reconnect_and_pays_once(
    live: Http,
) -> None:
    identity, owner = live.provision("car")
    shop = live.party("merchants", "shop", category="parking")
    headers = {"Authorization": f"Bearer {owner['api_key']}"}
    api, device_id = live.stack.api, identity.device_id
    assert (
        api.put(
            f"/v1/devices/{device_id}/rules", json={"currency": "EUR"}, headers=headers
        ).status_code
        == 200
    )
    assert (
        api.post(
            f"/v1/devices/{device_id}/wallet/top-ups",
            headers=headers,
            json={"amount": 5000, "currency": "EUR", "idempotency_key": "t1"},
        ).status_code
        == 201
    )
    with live.client(identity) as car:
        car.connect()
        order_id = car.pay(shop["id"], 700, "EUR", description="parking")
        first = car.wait_for_result(order_id)
    assert (first.status, first.duplicate) == ("approved", False)
    _lose_unsynced_lines(identity.paths.journal, order_id)  # the power went out
    with live.client(identity) as restarted:
        restarted.connect()  # re-sends the unfinished order by itself
        again = restarted.wait_for_result(order_id)
        assert restarted.journal.unfinished() == []
    assert (again.status, again.duplicate, again.payment_id) == ("approved", True, first.payment_id)
    wallet = api.get(f"/v1/devices/{device_id}/wallet", headers=headers).json()
    assert wallet["balance"] == 5000 - 700


def _lose_unsynced_lines(journal: Path, order_id: str) -> None:
    """Cut the journal after the order's (fsynced) line: its final line was never synced."""
    lines = journal.read_bytes().splitlines(keepends=True)
    kept = next(n for n, line in enumerate(lines) if f'"order":"{order_id}"'.encode() in line)
    journal.write_bytes(b"".join(lines[: kept + 1]))


def test_orders_not_sent_within_resend_after_are_due_oldest_first(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.jsonl", fsync=False)
    for n in range(1, 4):
        journal.record_order(f"o-{n}", f"jws-{n}")
    journal.close()
    journal = Journal(tmp_path / "journal.jsonl", fsync=False)  # after a restart: all due
    assert journal.due(100.0, 10.0, 2) == [("o-1", "jws-1"), ("o-2", "jws-2")]
    journal.mark_sent(["o-1", "o-2", "o-3"], 100.0)
    assert journal.due(109.0, 10.0, 5) == []
    journal.mark_sent(["o-2"], 105.0)
    assert journal.due(110.0, 10.0, 5) == [("o-1", "jws-1"), ("o-3", "jws-3")]
    journal.record_final("o-1", "approved")
    journal.mark_due_if_sent_before(104.0)  # a reconnect at 104: o-3 was sent before it
    assert journal.due(104.5, 10.0, 5) == [("o-3", "jws-3")]
    journal.close()
