"""Random hex drawn from the CSPRNG in blocks (gateway.ids)."""

from __future__ import annotations

import os
import re
import threading

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
