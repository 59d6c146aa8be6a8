"""The plan a database makes for a statement as the gateway runs it: SQLite's `EXPLAIN QUERY
PLAN`, and on PostgreSQL the generic plan of a server-side prepared statement (psycopg prepares
one that runs five times: its parameters unknown when it is planned)."""

from __future__ import annotations

import re
from typing import Any

from psycopg import sql as pg_sql
from sqlalchemy import Connection
from sqlalchemy.sql import ClauseElement
from sqlalchemy.sql.compiler import SQLCompiler


def plan_of(conn: Connection, statement: ClauseElement, name: str) -> str:
    """The plan of `statement` as one line of text; `name`: the prepared statement's name."""
    sql, params = as_run(conn, statement)
    if conn.dialect.name == "sqlite":
        rows = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {sql}", params)
        return " ".join(str(row[-1]) for row in rows)
    return generic_plan(conn, sql, params, name)


def generic_plan(conn: Connection, sql: str, params: dict[str, Any], name: str) -> str:
    """PostgreSQL's generic plan of the statement, with sequential scans discouraged (the
    tables of a test are small: the plan then says every index it can use)."""
    names: list[str] = []

    def numbered(match: re.Match[str]) -> str:
        names.append(match.group(1))
        return f"${len(names)}"

    prepared = re.sub(r"%\((\w+)\)s", numbered, sql)
    driver = conn.connection.driver_connection
    assert driver is not None
    values = ", ".join(pg_sql.Literal(params[n]).as_string(driver) for n in names)
    conn.exec_driver_sql("SET LOCAL enable_seqscan = off")  # a small table: say it all
    conn.exec_driver_sql("SET LOCAL plan_cache_mode = force_generic_plan")
    conn.exec_driver_sql(f"PREPARE {name} AS {prepared}")
    try:
        rows = conn.exec_driver_sql(f"EXPLAIN EXECUTE {name}({values})")
        return " ".join(row[0] for row in rows)
    finally:
        conn.exec_driver_sql(f"DEALLOCATE {name}")


def as_run(conn: Connection, statement: ClauseElement) -> tuple[str, Any]:
    """The statement's SQL and its processed parameters, as the driver gets them."""
    compiled = statement.compile(conn, compile_kwargs={"render_postcompile": True})
    assert isinstance(compiled, SQLCompiler)
    values = compiled.construct_params()
    for name, bind in compiled.binds.items():
        process = bind.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
        if process is not None and name in values:
            values[name] = process(values[name])
    if compiled.positiontup is None:
        return str(compiled), values
    return str(compiled), tuple(values[name] for name in compiled.positiontup)
