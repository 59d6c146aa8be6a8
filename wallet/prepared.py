"""Statements compiled once per dialect and run on the DBAPI cursor: the per-payment fast path."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from operator import itemgetter
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

    def later(self, conn: Connection, params: dict[str, Any]) -> Callable[[], list[Any]]:
        """Execute with `params` now and read its rows later: inside `pipelined` on PostgreSQL
        the statement is only queued, and its rows are there once the block has ended (one
        round trip for all it queued). Elsewhere it runs now; the function returns its rows."""
        if not in_pipeline(conn):
            found = self.rows(conn, params)
            return lambda: found
        sql, positions, processors = self.plan(conn)
        values = {k: processors[k](v) if k in processors else v for k, v in params.items()}
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        cursor.execute(sql, values if positions is None else [values[k] for k in positions])
        return lambda: _rows_of(cursor)

    def many(self, conn: Connection, params: Sequence[dict[str, Any]]) -> None:
        """Execute once per item of `params` with the DBAPI's `executemany` (no rows back).

        A bind processor runs once per value object in a call (a batch's rows share their
        timestamp), not once per row."""
        if not params:
            return
        sql, positions, processors = self._plans.get(conn.dialect.name) or self._compile(
            conn.dialect
        )
        processed = memoized(processors)
        if positions is None:
            values: list[Any] = [{k: processed(k, v) for k, v in p.items()} for p in params]
        else:  # the columns without a processor copied in C, the others set after
            take, process = (
                itemgetter(*positions),
                [(i, k) for i, k in enumerate(positions) if k in processors],
            )
            values = []
            for p in params:
                row = list(take(p)) if len(positions) > 1 else [take(p)]
                for i, k in process:
                    row[i] = processed(k, row[i])
                values.append(row)
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(sql, values)
        except conn.dialect.loaded_dbapi.Error as error:
            raise sa.exc.DBAPIError.instance(
                sql, params, error, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect
            ) from error
        finally:
            cursor.close()

    def plan(self, conn: Connection) -> tuple[str, tuple[str, ...] | None, dict[str, Any]]:
        """(SQL, bind names in order when the dialect is positional, bind processors)."""
        return self._plans.get(conn.dialect.name) or self._compile(conn.dialect)

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


@contextmanager
def pipelined(conn: Connection) -> Iterator[None]:
    """On PostgreSQL, the statements run inside go in one round trip (psycopg's pipeline mode):
    only for statements that return no rows, or whose rows are read after the block (see
    `Prepared.later`, `insert_later`): a pipelined cursor has no `description` until the
    pipeline syncs. Blocks nest into the outermost one. A no-op elsewhere."""
    if conn.dialect.name != "postgresql" or in_pipeline(conn):
        yield  # inside another block: that block's end sends them all
        return
    driver = conn.connection.driver_connection
    try:
        with driver.pipeline():  # type: ignore[union-attr]
            yield
    except conn.dialect.loaded_dbapi.Error as error:  # as Core would raise it (retries)
        raise sa.exc.DBAPIError.instance(
            "pipeline", {}, error, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect
        ) from error


def commit_in_pipeline(conn: Connection) -> None:
    """Inside `pipelined` on PostgreSQL: COMMIT with the statements queued so far, in their
    round trip (it waits for them all); SQLAlchemy's own commit at the transaction's end then
    finds nothing to do. Nothing more may run on `conn` in this transaction. Elsewhere a
    no-op: the transaction commits as usual."""
    if in_pipeline(conn):
        conn.connection.driver_connection.commit()  # type: ignore[union-attr]


def in_pipeline(conn: Connection) -> bool:
    """Whether statements on `conn` are being queued in a `pipelined` block."""
    if conn.dialect.name != "postgresql":
        return False
    driver = conn.connection.driver_connection
    return bool(driver.pgconn.pipeline_status)  # type: ignore[union-attr]  # 0: PQ_PIPELINE_OFF


def _rows_of(cursor: Any) -> list[Any]:
    """A cursor's rows (once its pipeline has synced), the cursor closed."""
    try:
        return cursor.fetchall() if cursor.description else []
    finally:
        cursor.close()


def memoized(processors: dict[str, Any]) -> Callable[[str, Any], Any]:
    """`processed(key, value)`: the key's bind processor applied to the value, once per value
    object (a batch's rows share their timestamp); for one call's rows, which outlive it."""
    memo: dict[tuple[str, int], Any] = {}

    def processed(key: str, value: Any) -> Any:
        processor = processors.get(key)
        if processor is None:
            return value
        found = memo.get((key, id(value)), memo)
        if found is memo:
            found = memo[(key, id(value))] = processor(value)
        return found

    return processed


def any_of(column: str, name: str) -> dict[str, Any]:
    """`column` in the list bound as `name` (see `as_list`), as a fixed statement per dialect:
    `IN (SELECT value FROM json_each(:name))` on SQLite, `= ANY(:name)` on PostgreSQL."""
    return {
        "sqlite": f"{column} IN (SELECT value FROM json_each(:{name}))",
        "postgresql": f"{column} = ANY(:{name})",
    }


def as_list(conn: Connection, values: Sequence[Any]) -> Any:
    """A list bound for `any_of`: JSON text on SQLite, a list (an array) on PostgreSQL."""
    return list(values) if conn.dialect.name == "postgresql" else json.dumps(list(values))


_INSERTS: dict[tuple[sa.Table, tuple[str, ...]], Prepared] = {}
CHUNK = 128  # rows per multi-row statement


def _single_row(table: sa.Table, keys: tuple[str, ...]) -> Prepared:
    prepared = _INSERTS.get((table, keys))
    if prepared is None:
        prepared = _INSERTS[(table, keys)] = Prepared({"*": sa.insert(table)}, keys)
    return prepared


def insert_many(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> None:
    """Insert rows that all have the same keys (every column they set, and no other column
    with a default) on the DBAPI cursor: what `conn.execute(insert, rows)` stores, without
    Core's work per row (about 40 % of a batch's inserts). SQLite: one `executemany` (its loop
    is in C); PostgreSQL: one INSERT ... SELECT FROM unnest(<one array per column>)."""
    if not rows:
        return
    if conn.dialect.name == "postgresql":
        insert_returning(conn, table, rows, ())
    else:
        _single_row(table, tuple(rows[0])).many(conn, rows)


def insert_later(
    conn: Connection,
    table: sa.Table,
    rows: Sequence[dict[str, Any]],
    returning: Sequence[str],
    echo: sa.Table | None = None,
) -> Callable[[], list[tuple[Any, ...]]]:
    """`insert_returning`, whose rows are read later: inside `pipelined` on PostgreSQL the
    insert is only queued, and its rows are there once the block has ended."""
    if not rows or not in_pipeline(conn):
        found = insert_returning(conn, table, rows, returning, echo)
        return lambda: found
    keys = tuple(rows[0])
    processed = memoized(_single_row(table, keys).plan(conn)[2])
    head, _, tail = _insert_sql(conn.dialect, table, keys, tuple(returning))
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    sql = _echoing(conn.dialect, head + tail, returning, echo)
    cursor.execute(sql, [[processed(k, row[k]) for row in rows] for k in keys])
    return lambda: _rows_of(cursor)


def insert_returning(
    conn: Connection,
    table: sa.Table,
    rows: Sequence[dict[str, Any]],
    returning: Sequence[str],
    echo: sa.Table | None = None,
) -> list[tuple[Any, ...]]:
    """Insert rows that all have the same keys on the DBAPI cursor (SQLite: multi-row INSERTs
    of CHUNK rows; PostgreSQL: one INSERT ... SELECT FROM unnest, an array a column); the
    `returning` columns of every row inserted, in no promised order. The values pass through
    the columns' bind processors, as Core's would.

    `echo`: a table of one column, which gets the first `returning` value of every row
    inserted as a row of its own (on PostgreSQL in the same statement, a data-modifying WITH;
    on SQLite by a second statement)."""
    if not rows:
        return []
    keys = tuple(rows[0])
    processed = memoized(_single_row(table, keys).plan(conn)[2])
    head, one, tail = _insert_sql(conn.dialect, table, keys, tuple(returning))
    statements: list[tuple[str, list[Any]]] = []
    if conn.dialect.name == "postgresql":
        sql = _echoing(conn.dialect, head + tail, returning, echo)
        statements.append((sql, [[processed(k, row[k]) for row in rows] for k in keys]))
    else:
        for start in range(0, len(rows), CHUNK):
            chunk = rows[start : start + CHUNK]
            values = [processed(k, row[k]) for row in chunk for k in keys]
            statements.append((head + ", ".join([one] * len(chunk)) + tail, values))
    found: list[tuple[Any, ...]] = []
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        for sql, params in statements:
            cursor.execute(sql, params)
            if returning:
                found += cursor.fetchall()
    except conn.dialect.loaded_dbapi.Error as error:
        raise sa.exc.DBAPIError.instance(
            head, rows, error, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect
        ) from error
    finally:
        cursor.close()
    if echo is not None and conn.dialect.name != "postgresql":
        insert_many(conn, echo, [{echo.c[0].name: row[0]} for row in found])
    return found


def _echoing(
    dialect: sa.Dialect, insert: str, returning: Sequence[str], echo: sa.Table | None
) -> str:
    """An INSERT ... RETURNING that also copies its rows' first returned value into `echo`
    (PostgreSQL)."""
    if echo is None:
        return insert
    quote = dialect.identifier_preparer
    back = ", ".join(quote.quote(c) for c in returning)
    into = f"{quote.format_table(echo)} ({quote.format_column(echo.c[0])})"
    return (
        f"WITH inserted AS ({insert}), echoed AS "
        f"(INSERT INTO {into} SELECT {quote.quote(returning[0])} FROM inserted) "
        f"SELECT {back} FROM inserted"
    )


_SQL: dict[tuple[str, sa.Table, tuple[str, ...], tuple[str, ...]], tuple[str, str, str]] = {}


def _insert_sql(
    dialect: sa.Dialect, table: sa.Table, keys: tuple[str, ...], returning: tuple[str, ...]
) -> tuple[str, str, str]:
    """(head, one row's placeholders, tail) of a multi-row insert; on PostgreSQL the head
    selects from unnest of one typed array per column and takes no rows' placeholders."""
    found = _SQL.get((dialect.name, table, keys, returning))
    if found is not None:
        return found
    quote = dialect.identifier_preparer
    columns = ", ".join(quote.format_column(table.c[k]) for k in keys)
    head = f"INSERT INTO {quote.format_table(table)} ({columns}) "
    back = ", ".join(quote.format_column(table.c[c]) for c in returning)
    tail = f" RETURNING {back}" if returning else ""
    if dialect.name == "postgresql":
        # %b: binary arrays (psycopg escapes every element of a text array in Python)
        arrays = ", ".join(f"%b::{table.c[k].type.compile(dialect=dialect)}[]" for k in keys)
        found = (f"{head}SELECT * FROM unnest({arrays})", "", tail)
    else:
        mark = "?" if dialect.paramstyle == "qmark" else "%s"
        found = (head + "VALUES ", "(" + ", ".join([mark] * len(keys)) + ")", tail)
    _SQL[(dialect.name, table, keys, returning)] = found
    return found
