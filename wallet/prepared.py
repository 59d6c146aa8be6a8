"""Statements compiled once per dialect and run on the DBAPI cursor: the per-payment fast path."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql, sqlite


def ignoring_duplicates(table: sa.Table, *columns: str) -> dict[str, Any]:
    """INSERT ... ON CONFLICT DO NOTHING RETURNING: a row back means it was inserted."""
    return {
        "postgresql": postgresql.insert(table)
        .on_conflict_do_nothing(index_elements=columns)
        .returning(table.c[columns[0]]),
        "sqlite": sqlite.insert(table)
        .on_conflict_do_nothing(index_elements=columns)
        .returning(table.c[columns[0]]),
    }


class Prepared:
    """A Core statement compiled once per dialect and run on the DBAPI cursor itself.

    SQLAlchemy spends about 45 µs on every execution (context, parameters, result), three times
    what SQLite needs to run one of these statements; the statements every payment runs skip it.
    Parameters still pass through their types' bind processors, so values are stored exactly as
    Core would store them, and the statement runs in the caller's transaction.
    """

    def __init__(self, statements: dict[str, Any], column_keys: Sequence[str] | None = None):
        self._statements = statements
        self._column_keys = column_keys
        self._plans: dict[str, tuple[str, tuple[str, ...] | None, dict[str, Any]]] = {}

    def rows(self, conn: Connection, params: dict[str, Any]) -> list[tuple[Any, ...]]:
        """Execute with `params` (by bind name) and return the rows it returns."""
        plan = self._plans.get(conn.dialect.name) or self._compile(conn.dialect)
        sql, positions, processors = plan
        values = {k: processors[k](v) if k in processors else v for k, v in params.items()}
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(sql, values if positions is None else [values[k] for k in positions])
            return cursor.fetchall() if cursor.description else []
        except conn.dialect.loaded_dbapi.Error as error:
            # Raise what Core would, so that Database.run still retries deadlocks and locks.
            raise sa.exc.DBAPIError.instance(
                sql, values, error, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect
            ) from error
        finally:
            cursor.close()

    def rows_many(
        self, conn: Connection, params: Sequence[dict[str, Any]]
    ) -> list[list[tuple[Any, ...]]]:
        """`rows` for each of `params`, in order; on PostgreSQL in one round trip (psycopg's
        pipeline mode), elsewhere one after another."""
        if conn.dialect.name != "postgresql" or len(params) < 2:
            return [self.rows(conn, p) for p in params]
        sql, positions, processors = self._plans.get(conn.dialect.name) or self._compile(
            conn.dialect
        )
        driver = conn.connection.driver_connection
        cursors = []
        try:
            with driver.pipeline():  # type: ignore[union-attr]
                for p in params:
                    values = {k: processors[k](v) if k in processors else v for k, v in p.items()}
                    cursor = driver.cursor()  # type: ignore[union-attr]
                    cursors.append(cursor)
                    cursor.execute(
                        sql, values if positions is None else [values[k] for k in positions]
                    )
            return [c.fetchall() if c.description else [] for c in cursors]
        except conn.dialect.loaded_dbapi.Error as error:
            raise sa.exc.DBAPIError.instance(
                sql, params, error, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect
            ) from error
        finally:
            for cursor in cursors:
                cursor.close()

    def many(self, conn: Connection, params: Sequence[dict[str, Any]]) -> None:
        """Execute once per item of `params` with the DBAPI's `executemany` (no rows back).

        A bind processor runs once per value object in a call (a batch's rows share their
        timestamp), not once per row."""
        if not params:
            return
        sql, positions, processors = self._plans.get(conn.dialect.name) or self._compile(
            conn.dialect
        )
        memo: dict[tuple[str, int], Any] = {}  # by identity: the rows outlive the call

        def processed(key: str, value: Any) -> Any:
            processor = processors.get(key)
            if processor is None:
                return value
            found = memo.get((key, id(value)), memo)
            if found is memo:
                found = memo[(key, id(value))] = processor(value)
            return found

        if positions is None:
            values: list[Any] = [{k: processed(k, v) for k, v in p.items()} for p in params]
        else:
            values = [tuple(processed(k, p[k]) for k in positions) for p in params]
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(sql, values)
        except conn.dialect.loaded_dbapi.Error as error:
            raise sa.exc.DBAPIError.instance(
                sql, params, error, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect
            ) from error
        finally:
            cursor.close()

    def _compile(self, dialect: sa.Dialect) -> tuple[str, tuple[str, ...] | None, dict[str, Any]]:
        statement = self._statements.get(dialect.name, self._statements.get("*"))
        assert statement is not None, f"no statement for {dialect.name}"
        compiled = statement.compile(dialect=dialect, column_keys=self._column_keys)
        processors = {}
        for key, bind in compiled.binds.items():
            processor = bind.type.dialect_impl(dialect).bind_processor(dialect)
            if processor is not None:
                processors[key] = processor
        positions = tuple(compiled.positiontup) if dialect.positional else None
        if self._column_keys is not None:  # every column bound from the rows, no defaults
            assert set(compiled.binds) == set(self._column_keys), (set(compiled.binds), self)
        self._plans[dialect.name] = (compiled.string, positions, processors)
        return self._plans[dialect.name]


_INSERTS: dict[tuple[sa.Table, tuple[str, ...]], Prepared] = {}


def insert_many(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows that all have the same keys (every column they set, and no other column
    with a default) with one `executemany` on the DBAPI cursor: what `conn.execute(insert,
    rows)` stores, without Core's work per row (about 40 % of a batch's inserts)."""
    if not rows:
        return
    keys = tuple(rows[0])
    prepared = _INSERTS.get((table, keys))
    if prepared is None:
        prepared = _INSERTS[(table, keys)] = Prepared({"*": sa.insert(table)}, keys)
    prepared.many(conn, rows)


_RETURNING: dict[tuple[sa.Table, tuple[str, ...], tuple[str, ...], int], Prepared] = {}
RETURNING_CHUNK = 128  # rows per statement: at most this many statements compiled per shape


def insert_returning(
    conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]], returning: Sequence[str]
) -> list[tuple[Any, ...]]:
    """Insert rows that all have the same keys with multi-row INSERT ... RETURNING statements
    on the DBAPI cursor (one per RETURNING_CHUNK rows); the `returning` columns of every row
    inserted, in no promised order."""
    if not rows:
        return []
    keys, found = tuple(rows[0]), []
    for start in range(0, len(rows), RETURNING_CHUNK):
        chunk = rows[start : start + RETURNING_CHUNK]
        shape = (table, keys, tuple(returning), len(chunk))
        prepared = _RETURNING.get(shape)
        if prepared is None:
            values = [
                {k: sa.bindparam(f"{k}_{i}", type_=table.c[k].type) for k in keys}
                for i in range(len(chunk))
            ]
            statement = sa.insert(table).values(values).returning(*(table.c[c] for c in returning))
            prepared = _RETURNING[shape] = Prepared({"*": statement})
        found += prepared.rows(
            conn, {f"{k}_{i}": row[k] for i, row in enumerate(chunk) for k in keys}
        )
    return found
