"""Automatic top-ups inside the decision (contract section 8): step 4 counts what the owner's
balance sources could add, and step 6 moves it together with the payment, in its transaction.

`check_funds` plans the draws (or declines with `insufficient_funds`) and keeps the plan on the
batch; `top_up` moves it right before the payment is placed and answers the result's
`funded_by`. A source's draw is one conditional UPDATE that keeps it at or above its floor, so
another worker drawing on the same source at the same time can only make a draw fail, never go
below the floor; a draw that fails undoes the payment's other draws (a savepoint) and declines.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from devices.registry import Device
from gateway.consent.rules import AutoTopUp, Rules
from gateway.funding import plan
from gateway.funding import store as funding_store
from gateway.funding.plan import Draw, Source
from gateway.orders.batch import Batch
from wallet import draws as wallet_draws
from wallet import store as wallet_store
from wallet.errors import InsufficientFunds

FundedBy = tuple[dict[str, Any], ...]
_ATTEMPTS = 3
log = logging.getLogger("kym.funding")


@dataclass(frozen=True)
class _Planned:
    """Step 4's plan for a device's order, and what it was planned from."""

    draws: list[Draw]
    wallet_available: int
    amount_minor: int
    auto: AutoTopUp | None


def check_funds(batch: Batch, device: Device, rules: Rules | None, amount_minor: int) -> None:
    """Step 4: the wallet's `available` plus what automatic top-ups could add covers the
    amount; the draws that would be needed are kept for `top_up`."""
    if not covers(batch, device, rules, amount_minor):
        raise InsufficientFunds("the wallet and the owner's sources cannot cover the amount")


def covers(batch: Batch, device: Device, rules: Rules | None, amount_minor: int) -> bool:
    """`check_funds` without the refusal: whether they cover it (the draws kept when so)."""
    wallet_available = _wallet_available(batch, device.id)
    auto = None if rules is None or device.owner_id in batch.frozen else rules.auto_top_up
    forget_plan(batch, device.id)
    least, most = plan.wanted(wallet_available, amount_minor, auto)
    if most == 0:
        return least == 0  # no top-up is due or possible: the wallet alone pays, or nothing
    draws = _plan(batch, device, wallet_available, amount_minor, auto)
    if draws is None:
        return False
    batch.funding["plans"][device.id] = _Planned(draws, wallet_available, amount_minor, auto)
    return True


def has_plan(batch: Batch, device_id: str) -> bool:
    """Whether step 4 planned draws for the device's order (`top_up` would move them)."""
    return device_id in batch.funding.get("plans", {})


def forget_plan(batch: Batch, device_id: str) -> None:
    """Drop the draws step 4 planned for the device's order (it will not move them)."""
    batch.funding.setdefault("plans", {}).pop(device_id, None)


def source_balances(batch: Batch, device: Device) -> list[int]:
    """The balances of the owner's balance sources of the wallet's currency, as this batch
    leaves them (floors not subtracted)."""
    drawn: dict[str, int] = batch.funding.get("drawn", {})
    return [s.balance_minor - drawn.get(s.id, 0) for s in _sources(batch, device)]


def _plan(
    batch: Batch, device: Device, wallet_available: int, amount_minor: int, auto: AutoTopUp | None
) -> list[Draw] | None:
    offered = [(s.id, _available_now(batch, s)) for s in _sources(batch, device)]
    return plan.plan(wallet_available, amount_minor, auto, offered)


def top_up(batch: Batch, device: Device, payment_id: str) -> FundedBy:
    """Step 6: move the planned draws into the wallet for `payment_id`; `funded_by`. When
    another transaction drew on a source first, the sources are read again and the draws
    planned anew (a few times); declines when they can no longer cover the payment."""
    planned: _Planned | None = batch.funding.get("plans", {}).pop(device.id, None)
    if planned is None:
        return ()
    draws: list[Draw] | None = planned.draws
    for _ in range(_ATTEMPTS):
        if draws is None:
            break
        if _draw_all(batch, device, draws, payment_id):
            return tuple({"source": d.source_id, "amount": d.amount_minor} for d in draws)
        log.info("a source of %s was drawn on meanwhile: planning %s again", device.id, payment_id)
        _forget_sources(batch, device.owner_id)
        draws = _plan(batch, device, planned.wallet_available, planned.amount_minor, planned.auto)
    raise InsufficientFunds("the owner's sources were drawn on meanwhile")


def _draw_all(batch: Batch, device: Device, draws: list[Draw], payment_id: str) -> bool:
    """Move every draw, or none (a savepoint); counts them in the batch's view."""
    if not draws:
        return True
    by_id = {s.id: s for s in _sources(batch, device)}
    savepoint = batch.conn.begin_nested()
    for d in draws:
        moved = wallet_draws.draw(
            batch.conn,
            source_id=d.source_id,
            wallet_id=device.id,
            currency=device.currency,
            amount_minor=d.amount_minor,
            floor_minor=by_id[d.source_id].floor_minor,
            payment_id=payment_id,
            now=batch.now,
        )
        if not moved:
            savepoint.rollback()
            return False
    savepoint.commit()
    drawn = batch.funding.setdefault("drawn", {})
    for d in draws:
        drawn[d.source_id] = drawn.get(d.source_id, 0) + d.amount_minor
    total = sum(d.amount_minor for d in draws)
    batch.available[device.id] = _wallet_available(batch, device.id) + total
    return True


def _wallet_available(batch: Batch, holder_id: str) -> int:
    if holder_id not in batch.available:
        wallet = wallet_store.get_wallet(batch.conn, holder_id)
        batch.available[holder_id] = wallet.available_minor if wallet else 0
    return batch.available[holder_id]


def _sources(batch: Batch, device: Device) -> list[Source]:
    """The owner's balance sources of the wallet's currency, in draw order (read once a batch)."""
    loaded: dict[str, list[Source]] = batch.funding.setdefault("sources", {})
    if device.owner_id not in loaded:
        loaded.update(funding_store.balance_sources(batch.conn, [device.owner_id]))
    return [s for s in loaded[device.owner_id] if s.currency == device.currency]


def _forget_sources(batch: Batch, owner_id: str) -> None:
    """Read the owner's sources again at the next use (the new read sees this batch's draws)."""
    stale = batch.funding.get("sources", {}).pop(owner_id, [])
    drawn: dict[str, int] = batch.funding.get("drawn", {})
    for source in stale:
        drawn.pop(source.id, None)


def _available_now(batch: Batch, source: Source) -> int:
    """What the source has above its floor, less what this batch already drew on it."""
    drawn: dict[str, int] = batch.funding.get("drawn", {})
    return max(0, plan.available(source) - drawn.get(source.id, 0))
