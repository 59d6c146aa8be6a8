"""`kym ledger check` for funding sources and instalment plans: each source has its ledger
account, in its currency; no draw or collection ever took a balance source below its floor
(replayed from the journal: a source topped up to less than its floor is below it without a
breach) and no plan ever took a credit line beyond its limit (replayed too); each automatic
top-up (a draw) went from a source of the payer's owner into the wallet of the payment it
names, which was opened; each plan's
instalments sum to its total, its opening moved its amount and fee, its paid instalments match
their collections' transfers (amounts and count), what a line owes is what its plans still owe,
and each currency's fee account holds the sum of its plans' fees."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import Connection, and_, select

from devices.store import devices
from gateway.funding import store as funding_store
from gateway.funding.plan import CREDIT_LINE
from gateway.funding.plan_check import check_plans
from wallet.check import Breach
from wallet.ledger import POSTING_KINDS, TransferKind
from wallet.schema import accounts, transfers


def check_sources(conn: Connection) -> list[Breach]:
    """Every breach of the sources' and plans' invariants; empty when they hold."""
    return [*_breaches(conn), *check_plans(conn)]


def check_draws(conn: Connection) -> list[Breach]:
    """Every automatic top-up (a draw) that is not the gateway's: one naming no opened payment,
    going into another wallet than its payer's, or from a source of another owner. Apart from
    `check_sources`: the wallet's own tests draw between wallets, with no payment behind."""
    return list(_draws_for_payments(conn))


def _breaches(conn: Connection) -> Iterator[Breach]:
    found = {row.id: row for row in conn.execute(select(accounts.c.id, accounts.c.currency))}
    for source in funding_store.all_sources(conn):
        account = found.get(source.id)
        if account is None or account.currency != source.currency:
            yield Breach("funding", source.id, "no ledger account in the source's currency")
        elif source.kind == CREDIT_LINE:
            assert source.credit_limit_minor is not None
            yield from _draws_below_floor(conn, source.id, -source.credit_limit_minor)
        else:
            yield from _draws_below_floor(conn, source.id, source.floor_minor)


_opening = transfers.alias("opening")
_DRAWS = (
    select(
        transfers.c.id,
        transfers.c.payment_id,
        transfers.c.debit_account_id.label("source_id"),
        transfers.c.credit_account_id.label("wallet_id"),
        _opening.c.debit_account_id.label("payer_id"),
        devices.c.owner_id.label("payer_owner_id"),
    )
    .select_from(
        transfers.outerjoin(
            _opening,
            and_(
                _opening.c.payment_id == transfers.c.payment_id,
                _opening.c.kind.in_([TransferKind.PAY.value, TransferKind.HOLD.value]),
            ),
        ).outerjoin(devices, devices.c.id == _opening.c.debit_account_id)
    )
    .where(transfers.c.kind == TransferKind.DRAW.value)
)


def _draws_for_payments(conn: Connection) -> Iterator[Breach]:
    """Each draw names a payment that was opened, went into that payment's payer wallet, and
    came from a source of the payer's owner: an automatic top-up is the owner's consent for
    their own device's payment, never money moved to anyone else."""
    owners = {source.id: source.owner_id for source in funding_store.all_sources(conn)}
    for row in conn.execute(_DRAWS):
        where = f"transfer {row.id}"
        if row.payer_id is None:
            yield Breach("funding", where, f"a draw for {row.payment_id}, never opened")
        elif row.wallet_id != row.payer_id:
            yield Breach("funding", where, f"a draw into {row.wallet_id}, not the payer's wallet")
        elif owners.get(row.source_id) != row.payer_owner_id:
            yield Breach("funding", where, f"a draw from {row.source_id}, not the payer's owner's")


def _draws_below_floor(conn: Connection, source_id: str, floor_minor: int) -> Iterator[Breach]:
    """Replay the source's journal in order: after each debit it keeps at least its floor (a
    credit line: minus its limit)."""
    query = (
        select(transfers.c.id, transfers.c.debit_account_id, transfers.c.amount_minor)
        .where(
            (transfers.c.debit_account_id == source_id)
            | (transfers.c.credit_account_id == source_id),
            transfers.c.kind.in_([k.value for k in POSTING_KINDS]),
        )
        .order_by(transfers.c.id)
    )
    balance = 0
    for transfer_id, debit_id, amount_minor in conn.execute(query):
        balance += -amount_minor if debit_id == source_id else amount_minor
        if debit_id == source_id and balance < floor_minor:
            rule = "credit_limit" if floor_minor < 0 else "floor"
            yield Breach(rule, source_id, f"transfer {transfer_id} left {balance} < {floor_minor}")
