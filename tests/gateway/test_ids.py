"""Random hex drawn from the CSPRNG in blocks (gateway.ids)."""

from __future__ import annotations

import os
import re
import threading
import time

import pytest

from gateway import ids


def test_random_hex_has_the_length_and_alphabet_of_token_hex() -> None:
    for nbytes in (8, 12, 32):
        assert re.fullmatch(f"[0-9a-f]{{{2 * nbytes}}}", ids.random_hex(nbytes))


def test_random_hex_never_hands_out_the_same_bytes_twice_across_blocks_and_threads() -> None:
    seen: list[str] = []

    def draw() -> None:
        seen.extend(ids.random_hex(12) for _ in range(2_000))  # several blocks each

    threads = [threading.Thread(target=draw) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 8_000
    assert len(set(seen)) == len(seen)


def test_a_request_larger_than_a_block_is_served_whole() -> None:
    assert len(ids.random_hex(ids.BLOCK_BYTES + 10)) == 2 * (ids.BLOCK_BYTES + 10)


def test_a_forked_child_draws_other_bytes_than_its_parent() -> None:
    ids.random_hex(8)  # the parent holds a partly used block
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next draw, to the parent
        os.write(write, ids.random_hex(16).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.waitpid(pid, 0)
    os.close(read)
    assert len(child) == 32
    assert child != ids.random_hex(16)


def test_ordered_hex_begins_with_the_time_and_sorts_as_it_was_made(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    now_ns = [1_796_000_000_123_456_789]
    monkeypatch.setattr(time, "time_ns", lambda: now_ns[0])
    first = ids.ordered_hex(8)
    assert re.fullmatch("[0-9a-f]{28}", first)
    assert int(first[:12], 16) == 1_796_000_000_123  # milliseconds
    same_ms = [ids.ordered_hex(8) for _ in range(1_000)]
    assert {i[:12] for i in same_ms} == {first[:12]} and len(set(same_ms)) == 1_000
    now_ns[0] += 1_000_000
    later = ids.ordered_hex(8)
    assert later > max([first, *same_ms])
    now_ns[0] = 253_402_300_799_000_000_000  # 9999-12-31: still 12 digits, still later
    assert len(ids.ordered_hex(8)) == 28 and ids.ordered_hex(8) > later


def test_payments_and_events_get_time_ordered_ids() -> None:
    from gateway.events.envelope import new_event_id

    before = f"{time.time_ns() // 1_000_000:012x}"
    event_id = new_event_id()
    assert re.fullmatch("evt_[0-9a-f]{36}", event_id) and event_id[4:16] >= before
