"""The household whose car pays from its owner's funding (contract section 8), as `kym demo`
sets it up and tells it: an everyday account that tops the car's nearly empty wallet up as it
fuels (the rules' `auto_top_up`), and a credit line whose instalment policy turns a large
repair bill into an offer that the owner reads and accepts.

All of it through the owner's HTTP API, like any owner's app.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.table import Table

from devices.sdk import Funding as Funded
from simulators.backoffice import Owner
from simulators.demo.script import money
from simulators.fleet import CURRENCY, Fleet

EVERYDAY = {
    "name": "Everyday account",
    "kind": "balance",
    "currency": CURRENCY,
    "priority": 10,
    "floor": 20_000,  # never taken below 200.00
}
EVERYDAY_DEPOSIT = 600_000
CREDIT_LINE = {
    "name": "Car credit line",
    "kind": "credit_line",
    "currency": CURRENCY,
    "credit_limit": 500_000,
    "apr_bps": 990,
}
# The owner keeps at least 6,000.00 across the car's wallet and the everyday account: a repair
# bill that would take them below it comes back as an offer, never as a silent loan.
POLICY = {
    "min_amount": 20_000,
    "max_amount": 300_000,
    "counts": [3, 6, 12],
    "interval_days": 30,
    "keep_at_least": 600_000,
    "categories": ["maintenance"],
}


@dataclass(frozen=True)
class Household:
    """The funded car's owner and the names of their sources, by id."""

    owner: Owner
    car_id: str
    sources: dict[str, str]


def set_up(fleet: Fleet) -> Household | None:
    """The everyday account (with a deposit), the credit line and the instalment policy of the
    funded car's owner; None when the fleet has no funded car."""
    if not fleet.funded:
        return None
    car_id = sorted(fleet.funded)[0]
    owner = fleet.owners[car_id]
    everyday = owner.add_funding_source(EVERYDAY)
    owner.top_up_source(everyday["id"], EVERYDAY_DEPOSIT, CURRENCY, f"demo-everyday-{car_id}")
    line = owner.add_funding_source(CREDIT_LINE)
    owner.set_instalment_policy({"source": line["id"], **POLICY})
    names = {everyday["id"]: str(EVERYDAY["name"]), line["id"]: str(CREDIT_LINE["name"])}
    return Household(owner, car_id, names)


def funded_note(funded_by: tuple[Funded, ...], names: dict[str, str]) -> str:
    """How a payment was funded, for the line that shows its result ('' from the wallet)."""
    parts = []
    for funded in funded_by:
        source = names.get(funded.source, funded.source)
        if funded.plan_id:
            parts.append(f"paid from {source} by instalments, plan {funded.plan_id}")
        else:
            parts.append(f"wallet topped up with {money(funded.amount)} from {source}")
    return "; ".join(parts)


def funding_table(household: Household) -> Table:
    """The household's sources after the run, each with the instalment plans it lent for."""
    table = Table(box=None)
    for column in ("source", "balance", "available", "instalment plans"):
        table.add_column(column, justify="right" if column in ("balance", "available") else "left")
    plans = household.owner.instalment_plans()
    for source in household.owner.funding_sources():
        lent = ", ".join(
            f"{p['status']}: {money(p['total'])} in {len(p['instalments'])} instalments"
            for p in plans
            if p["source"] == source["id"]
        )
        table.add_row(source["name"], money(source["balance"]), money(source["available"]), lent)
    return table
