"""Where the gateway worker's time goes: shares of its py-spy samples (raw format, -t) by part
of the order path. A sample counts for the first part (in this order) any of its frames names.

usage: python benchmarks/worker_shares.py PROFILE.raw [PROFILE.raw ...]
"""

from __future__ import annotations

import sys
from collections import Counter

PARTS = [
    ("savepoints", ["begin_nested", "_release_savepoint_impl", "NestedTransaction._do_commit"]),
    ("signature check (ES256 verify)", ["verify"]),
    ("signing results (ES256 sign)", ["sign"]),
    ("audit chain (encode, hash, 4 statements)", ["append", "append_to", "lock_state_later"]),
    (
        "wallet writes (payments, accounts, journal)",
        ["place", "place_in_bulk", "move_in_bulk", "record_in_bulk", "check_funds"],
    ),
    (
        "other inserts (orders, scopes, counters, outbox)",
        ["record_orders", "record_payment_scopes", "add_to_counters", "enqueue", "enqueue_later"],
    ),  # noqa: E501
    (
        "events (derived, encoded; the insert counts in begin and commit)",
        ["record_batch", "batch_events"],
    ),
    ("loading state (devices, rules, mandates, counters, known orders)", ["load_batch"]),
    ("decoding, schema (pydantic), certificates", ["check_messages"]),
    ("deciding (rules, consent, results, digests)", ["decide_one"]),
    ("begin and commit", ["Database.run", "Database.transaction"]),
    ("queue, acknowledgement, publish hand-off", ["Worker.run"]),
]


def shares(path: str) -> tuple[Counter[str], int]:
    found: Counter[str] = Counter()
    total = 0
    with open(path) as lines:
        for line in lines:
            stack, _, count = line.rstrip().rpartition(" ")
            frames = stack.split(";")
            if "kym-worker" not in frames[0]:
                continue
            total += int(count)
            names = [f.split(" (")[0] for f in frames[1:]]
            part = next(
                (
                    label
                    for label, keys in PARTS
                    if any(n == k or n.endswith("." + k) for n in names for k in keys)
                ),
                "other",
            )
            found[part] += int(count)
    return found, total


def main() -> None:
    results = [shares(path) for path in sys.argv[1:]]
    print("| part of the worker's time | " + " | ".join(sys.argv[1:]) + " |")
    print("|---|" + "---|" * len(results))
    for label in [label for label, _ in PARTS] + ["other"]:
        cells = [
            f"{100 * found[label] / total:.0f} %" if total else "-" for found, total in results
        ]
        print(f"| {label} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
