"""`kym audit verify` and `kym ledger check`, and what every `kym` command shares: the data
dir and database options, settings from flags, the variables' help, exit 2 for "could not
even look" or "could not start", and exit 130 for a Ctrl-C."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import click
from pydantic import ValidationError

from gateway.settings import Settings, unit_and_default

if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlalchemy import Connection

    from gateway.db import Database


def env_names() -> str:
    """Every KYM_* variable the settings read, a number's unit and default beside it."""
    return ", ".join(
        f"KYM_{name.upper()}" + (f" ({shown})" if (shown := unit_and_default(name)) else "")
        for name in Settings.model_fields
    )


def env_of(name: str) -> str:
    """`[env KYM_NAME; unit, default N]` for the help of the option that sets `name`."""
    shown = unit_and_default(name)
    return f"[env KYM_{name.upper()}{f'; {shown}' if shown else ''}]"


@contextmanager
def starting(command: str) -> Iterator[None]:
    """What stops a command from starting (a port in use, a database that does not answer, a
    data dir it cannot write, a file that is not PEM) as one line and exit 2; `kym -v` shows
    the traceback instead."""
    from sqlalchemy.exc import SQLAlchemyError

    from gateway.startup import DataDirInUse

    try:
        yield
    except DataDirInUse as exc:
        fail(str(exc))
    except (OSError, RuntimeError, SQLAlchemyError, ValueError) as exc:
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            raise
        what = str(getattr(exc, "orig", None) or exc).strip().splitlines() or [type(exc).__name__]
        fail(f"{command} could not start: {what[0]} (kym -v {command} ... shows where)")


DATA_DIR = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where the database, CAs and admin token live [env KYM_DATA_DIR; default ./kym-data].",
)
DATABASE_URL = click.option(
    "--database-url",
    default=None,
    metavar="URL",
    help="e.g. postgresql+psycopg://user@host/db [env KYM_DATABASE_URL; default SQLite in DIR].",
)


def settings_from(**flags: Any) -> Settings:
    """Settings from the flags that were given, then KYM_* variables, then defaults; a value
    that does not do is one line naming its flag and variable (exit 2), not a traceback."""
    given = {k: v for k, v in flags.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            name = str(error["loc"][0]) if error["loc"] else "settings"
            where = _flag_of(name) if name in given else f"KYM_{name.upper()}"
            problems.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
        fail("; ".join(problems))


def _flag_of(name: str) -> str:
    """The command line flag that sets `name` in the command running now."""
    context = click.get_current_context(silent=True)
    params = context.command.params if context is not None else []
    found = next((p.opts for p in params if p.name == name and p.opts), None)
    return max(found, key=len) if found else f"--{name.replace('_', '-')}"


class Kym(click.Group):
    """The `kym` group: a Ctrl-C that no command handled (one during `kym serve`'s start-up,
    say) is "kym: interrupted" and exit 130, as a shell reports SIGINT, not click's "Aborted!"
    and exit 1, which reads as a failure."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            click.echo("kym: interrupted", err=True)
            raise click.exceptions.Exit(130) from None


def fail(message: str) -> NoReturn:
    """One line on stderr and exit 2: the command could not even look (1 means "broken")."""
    click.echo(f"kym: {message}", err=True)
    sys.exit(2)


@click.group()
def audit() -> None:
    """Inspect the tamper-evident audit trail."""


@audit.command("verify")
@DATA_DIR
@DATABASE_URL
def audit_verify(**flags: Any) -> None:
    """Check the audit log (entries, Merkle tree, signed tree heads): exit 0 when intact,
    1 naming the first bad entry, 2 when there is nothing to check (no data dir, no database).

    \b
    Example:
      kym audit verify --data-dir ./kym-data
    """
    from gateway.audit import store
    from gateway.audit.service import signer_public_key
    from gateway.service import verify_audit

    settings = settings_from(**flags)
    db = existing_database(settings)
    tables = (store.audit_log, store.merkle_nodes, store.chain_head, store.tree_heads)
    if not settings.database_url:  # the data dir's own file: a wrong one is said first
        require_schema(db, tables)
    signer = signer_public_key(settings.data_dir)
    if signer is None:
        fail(f"no gateway signing certificate in {settings.data_dir} to check tree heads with")
    if settings.database_url:  # only now, so that a missing certificate is said unconnected
        require_schema(db, tables)
    for damage in readable(db, lambda: mistyped(db, tables)):
        click.echo(f"audit chain BROKEN: {damage}", err=True)
        sys.exit(1)
    count, problem = readable(db, lambda: verify_audit(db, signer))
    if problem is not None:
        seq, why = problem
        click.echo(f"audit chain BROKEN at entry {seq}: {why}", err=True)
        sys.exit(1)
    click.echo(f"audit chain intact: {count} entries")


@click.group()
def ledger() -> None:
    """Reconcile the wallets' double-entry ledger."""


@ledger.command("check")
@DATA_DIR
@DATABASE_URL
def ledger_check(**flags: Any) -> None:
    """Check every ledger invariant: exit 0 when they hold, 1 listing each breach, 2 when
    there is nothing to check (no data dir, no database).

    \b
    Example:
      kym ledger check --data-dir ./kym-data
    """
    from gateway.funding import plan_store
    from gateway.funding import store as funding_store
    from gateway.funding.check import check_draws, check_sources
    from wallet import schema
    from wallet.check import check

    tables: tuple[sa.Table, ...] = (schema.accounts, schema.transfers, schema.payments)
    tables += (schema.top_ups, funding_store.sources, plan_store.plans, plan_store.instalments)
    db = existing_database(settings_from(**flags))
    require_schema(db, tables)

    def breaches() -> list[Any]:
        if damaged := mistyped(db, tables):
            return [f"types: {damage}" for damage in damaged]  # the sums would not add up
        with db.snapshot() as conn:
            return check(conn) + check_sources(conn) + check_draws(conn)

    found = readable(db, breaches)
    for breach in found:
        click.echo(f"BREACH {breach}", err=True)
    if found:
        sys.exit(1)
    click.echo("ledger reconciled: every invariant holds")


def existing_database(settings: Settings) -> Database:
    """The configured database, or exit 2 when the SQLite file in the data dir is missing. A
    SQLite file this process may not write (an auditor's copy) is opened read-only."""
    from gateway.db import Database, read_only_sqlite

    if not settings.database_url:
        path = settings.data_dir / "kym.db"
        if not settings.data_dir.is_dir():
            fail(f"no data dir at {settings.data_dir} (give --data-dir or set KYM_DATA_DIR)")
        if not path.is_file():
            fail(f"no database in {settings.data_dir} (no {path.name}; has kym serve run?)")
    url = settings.resolved_database_url()
    return Database(url, read_only=read_only_sqlite(url))


def require_schema(db: Database, tables: tuple[sa.Table, ...]) -> None:
    """Exit 2 in one line when the database lacks the `tables` a check reads (an empty file,
    another program's database, one never migrated) rather than "no such table" later."""
    missing = readable(db, lambda: _missing_tables(db, tables))
    if missing:
        fail(_without_schema(db, tables, missing))


def _missing_tables(db: Database, tables: tuple[sa.Table, ...]) -> list[str]:
    import sqlalchemy as sa

    with db.snapshot() as conn:
        present = set(sa.inspect(conn).get_table_names())
    return [table.name for table in tables if table.name not in present]


def _without_schema(db: Database, tables: tuple[sa.Table, ...], missing: list[str]) -> str:
    """One line: which database lacks KYM's schema, and what to do about it."""
    from sqlalchemy.engine import make_url

    shown = make_url(db.url).render_as_string(hide_password=True)
    todo = (
        "kym serve with the same --data-dir/--database-url creates and migrates it; "
        "or give the database kym serve uses"
    )
    if len(missing) == len(tables):
        return f"{shown} has no KYM schema (not migrated, or not KYM's database): {todo}"
    return f"{shown} lacks KYM's tables {', '.join(missing)} (not fully migrated): {todo}"


def mistyped(db: Database, tables: tuple[sa.Table, ...]) -> list[str]:
    """On SQLite, which keeps whatever a column is given: each row (the first 10 a table) whose
    integer column holds something else, or whose Boolean column holds other than 0 or 1 (which
    SQLAlchemy would read as true), that the checks would trip over or pass rather than name."""
    with db.snapshot() as conn:
        if conn.dialect.name != "sqlite":
            return []
        return [found for table in tables for found in _mistyped_rows(conn, table)]


def _mistyped_rows(conn: Connection, table: sa.Table) -> list[str]:
    import sqlalchemy as sa

    checked = [c for c in table.columns if isinstance(c.type, sa.Integer | sa.Boolean)]
    bad = [_is_mistyped(column) for column in checked]
    query = (
        sa.select(*table.primary_key.columns, *bad, *(sa.func.quote(c) for c in checked))
        .where(sa.or_(*bad))
        .limit(10)
    )
    keys = len(table.primary_key.columns)
    found = []
    for row in conn.execute(query):
        key = "/".join(str(part) for part in row[:keys])
        for n, column in enumerate(checked):
            if row[keys + n]:
                value = row[keys + len(checked) + n]
                kind = "a Boolean (0 or 1)" if _is_boolean(column) else "an integer"
                found.append(f"{table.name} {key}: {column.name} holds {value}, not {kind}")
    return found


def _is_boolean(column: sa.Column[Any]) -> bool:
    import sqlalchemy as sa

    return isinstance(column.type, sa.Boolean)


def _is_mistyped(column: sa.Column[Any]) -> sa.ColumnElement[bool]:
    """True where the column holds neither NULL nor a value of its type (stored as SQLite keeps
    it: `typeof` and the raw value, before SQLAlchemy turns it into a Python value)."""
    import sqlalchemy as sa

    kind = sa.func.typeof(column)
    if not _is_boolean(column):
        return kind.not_in(["integer", "null"])
    raw = sa.type_coerce(column, sa.Integer)  # compared as stored, not as a bool
    return sa.and_(kind != "null", sa.or_(kind != "integer", raw.not_in([0, 1])))


def readable(db: Database, read: Any) -> Any:
    """`read()`, or exit 2 in one line when the database cannot be read at all; a value that
    the checks cannot read (a damaged row they do not name) is exit 1, broken, in one line."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    shown = make_url(db.url).render_as_string(hide_password=True)
    try:
        return read()
    except SQLAlchemyError as exc:
        cause = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        fail(f"cannot read the database {shown}: {cause}")
    except (ValueError, TypeError, ArithmeticError) as exc:
        if logging.getLogger().isEnabledFor(logging.DEBUG):
            raise
        click.echo(
            f"kym: {shown} is damaged: a value the check cannot read ({type(exc).__name__}: "
            f"{exc}); kym -v ... shows where",
            err=True,
        )
        sys.exit(1)
