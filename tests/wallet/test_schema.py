"""The tables declared in wallet/schema.py are the ones migration 0002 creates."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from gateway.db import Database
from wallet import schema


def test_the_store_declares_the_migrated_wallet_tables(db: Database) -> None:
    def wallet_only(obj: Any, name: str | None, type_: str, reflected: bool, _: Any) -> bool:
        table = obj if type_ == "table" else getattr(obj, "table", None)
        return table is not None and table.name.startswith("wallet_")

    with db.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": wallet_only}
        )
        differences = compare_metadata(context, schema.metadata)
    assert differences == []
    assert {t.name for t in schema.metadata.sorted_tables} == {
        "wallet_accounts",
        "wallet_transfers",
        "wallet_payments",
        "wallet_top_ups",
    }
