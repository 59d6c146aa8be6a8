"""The worker's pause between tries while the database keeps it waiting (`Waiting`)."""

from __future__ import annotations

import logging

import pytest

from gateway.mqtt.workers import MAX_WAITING_PAUSE_S, RETRY_PAUSE_S, Waiting


def test_the_pause_starts_at_half_a_second_and_grows_with_the_outage_to_a_cap() -> None:
    waiting = Waiting()
    assert waiting.still(OSError("disk I/O error")) == RETRY_PAUSE_S  # the wait begins
    assert waiting.since is not None
    begun = waiting.since
    assert waiting.pause(begun + 3) == RETRY_PAUSE_S
    assert waiting.pause(begun + 20) == pytest.approx(2.0)  # a tenth of the wait
    assert waiting.pause(begun + 600) == MAX_WAITING_PAUSE_S


def test_the_pause_falls_back_once_the_database_takes_writes_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    waiting = Waiting()
    waiting.still(OSError("disk I/O error"))
    assert waiting.since is not None
    waiting.since -= 600  # as if it had waited ten minutes
    assert waiting.still(OSError("disk I/O error")) == MAX_WAITING_PAUSE_S
    with caplog.at_level(logging.WARNING, logger="kym.pipeline"):
        waiting.over()
    assert "takes writes again after 600 s" in caplog.text
    assert waiting.still(OSError("database is locked")) == RETRY_PAUSE_S  # a new wait
