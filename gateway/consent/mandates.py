"""Step 5 of the decision for a `pay` or `hold`: does the owner need to approve it?

Without rules every order needs approval; with rules only one over `approval_above`. A mandate
(a standing consent) that covers the order removes the need, and the order is then charged to
that mandate: its own limits count only the approved payments it covered. A mandate is looked
for only when approval would otherwise be needed, so payments the rules let through anyway do
not use up a mandate.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from devices.contract import Category
from gateway.consent.rules import (
    Counters,
    Limit,
    OrderTerms,
    Payee,
    Rules,
    consent_rules,
    exceeded_limit,
)


@dataclass(frozen=True)
class Mandate:
    """A standing consent; it matches any payee or category that it leaves as `None`."""

    id: str
    payee: str | None
    category: Category | None
    max_amount_minor: int
    limits: tuple[Limit, ...] = ()
    valid_from: datetime | None = None  # inclusive
    valid_until: datetime | None = None  # exclusive
    active: bool = True

    @property
    def specificity(self) -> int:
        return (self.payee is not None) * 2 + (self.category is not None)


@dataclass(frozen=True)
class Consent:
    """The outcome of step 5: approval needed, or not, and the mandate to charge if one."""

    needs_approval: bool
    mandate: Mandate | None


def covers(
    mandate: Mandate,
    order: OrderTerms,
    payee: Payee,
    counters: Counters,
    now: datetime,
    tz: ZoneInfo,
) -> bool:
    """Whether `mandate`, with its own usage `counters`, covers the order at `now`."""
    assert now.tzinfo is not None, "now must be timezone-aware"
    return (
        mandate.active
        and mandate.payee in (None, order.payee_id)
        and mandate.category in (None, payee.effective_category)
        and order.amount_minor <= mandate.max_amount_minor
        and (mandate.valid_from is None or mandate.valid_from <= now)
        and (mandate.valid_until is None or now < mandate.valid_until)
        and exceeded_limit(mandate.limits, order.amount_minor, counters, now, tz) is None
    )


def covering_mandate(
    order: OrderTerms,
    payee: Payee,
    mandates: Iterable[Mandate],
    mandate_counters: Mapping[str, Counters],
    now: datetime,
    tz: ZoneInfo,
) -> Mandate | None:
    """The mandate that covers the order: the most specific, then the first given, or None."""
    by_specificity = sorted(mandates, key=lambda m: -m.specificity)  # stable: keeps given order
    for mandate in by_specificity:
        if covers(mandate, order, payee, mandate_counters.get(mandate.id, {}), now, tz):
            return mandate
    return None


def needs_approval(order: OrderTerms, rules: Rules | None, mandate: Mandate | None) -> bool:
    """Whether the owner must approve the order, given the mandate that covers it if any."""
    if mandate is not None:
        return False
    rules = consent_rules(rules)  # rules holding only an alert are no rules here
    if rules is None:
        return True
    above_minor = rules.approval_above_minor
    return above_minor is not None and order.amount_minor > above_minor


def decide_consent(
    order: OrderTerms,
    payee: Payee,
    rules: Rules | None,
    mandates: Iterable[Mandate],
    mandate_counters: Mapping[str, Counters],
    now: datetime,
    tz: ZoneInfo,
) -> Consent:
    """Step 5: whether the order waits for the owner, and which mandate (if any) it uses."""
    if not needs_approval(order, rules, None):
        return Consent(needs_approval=False, mandate=None)
    mandate = covering_mandate(order, payee, mandates, mandate_counters, now, tz)
    return Consent(needs_approval=mandate is None, mandate=mandate)
