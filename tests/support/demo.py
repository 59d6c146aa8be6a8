"""What every run of the demo must show, checked on its output."""

from __future__ import annotations

import re

SCRIPTED = (  # a scenario's results, then its payer's events
    "approved -> hold_captured -> refund_received",
    "approved -> hold_voided",
    "pending_approval -> approved",
    "pending_approval -> declined approval_declined",
    "declined category_not_allowed",
)


OUTCOMES = (  # (type, status, reason) rows of the summary's table of orders
    ("hold", "approved", ""),
    ("pay", "approved", ""),
    ("pay", "approved", "after the owner approved"),
    ("capture", "captured", ""),
    ("void", "voided", ""),
    ("refund", "refunded", ""),
    ("pay", "declined", "approval_declined"),
    ("pay", "declined", "category_not_allowed"),
)


TRICKS = {  # what the misbehaving device tried, and the answer the contract gives
    "replay": "approved, duplicate",
    "conflict": "rejected idempotency_conflict",
    "forgery": "rejected invalid_signature",
    "stale": "rejected stale_order",
    "over_limit": "declined amount_over_limit",
    "garbage": "rejected invalid_message",
    "impersonation": "rejected invalid_message",
}


def assert_tells_the_whole_story(output: str) -> None:
    live, found, summary = output.partition("Summary after")
    assert found, output
    # As it happens: the owner's decisions, after the orders waited for them.
    assert "pending_approval (the owner decides)" in live
    assert "the owner approves" in live and "the owner declines" in live
    assert "The script: 11 of 11 scenarios as expected" in summary, summary
    # The funded car: its wallet topped up from the owner's everyday account as it pays.
    assert re.search(r"approved \(wallet topped up with [\d,.]+ EUR from Everyday account\)", live)
    assert re.search(r"^\s*Everyday account\s+[\d,.]+ EUR\s+[\d,.]+ EUR", summary, re.MULTILINE)
    # Its repair bill: an offer the owner reads (count, instalment, fee, total) and takes.
    offer = r"the owner accepts the instalment offer for car-0's 480\.00 EUR: 6 of [\d.]+ EUR every"
    assert re.search(offer + r" 30 days, fee [\d.]+ EUR, total [\d,.]+ EUR, first due", live)
    assert re.search(r"approved \(paid from Car credit line by instalments, plan plan_\w+\)", live)
    line = r"^\s*Car credit line\s+-[\d,.]+ EUR\s+[\d,.]+ EUR\s+active: [\d,.]+ EUR in 6 inst"
    assert re.search(line, summary, re.MULTILINE), summary
    for seen in SCRIPTED:
        assert seen in summary, (seen, summary)
    for kind, status, reason in OUTCOMES:
        row = rf"^\s*{kind}\s+{status}\s+{re.escape(reason)}\s+[1-9]\d*\s*$"
        assert re.search(row, summary, re.MULTILINE), ((kind, status, reason), summary)
    for trick, answer in TRICKS.items():
        row = rf"^\s*{trick}\s+{re.escape(answer)}\s+[1-9]\d*\s*$"
        assert re.search(row, summary, re.MULTILINE), (trick, summary)
    assert "surprises of the misbehaving device: 0" in summary
    assert "unanswered 0, results the devices refused to believe 0" in summary
    assert "ledger: reconciled, every invariant holds" in summary
    assert re.search(r"^audit chain: intact, [1-9]\d* entries$", summary, re.MULTILINE)
