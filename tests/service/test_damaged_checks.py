"""`kym ledger check` and `kym audit verify` on a SQLite copy damaged with sqlite3: a value of
the wrong type, or the audit log's anchor gone, is named in one line with exit 1 (broken), never
a traceback. SQLite keeps whatever a column is given, so the checks meet what the schema's types
would have refused on PostgreSQL."""

from __future__ import annotations

import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

import pytest

from gateway.audit import service as audit_service
from tests.service.test_read_only_checks import checks, copy_of, pay
from tests.support.world import World


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(
    ("statement", "command", "said"),
    [
        (
            "UPDATE wallet_accounts SET credits_posted = 'x' WHERE kind = 'wallet'",
            "ledger check",
            "BREACH types: wallet_accounts ",  # then the account's id
        ),
        (
            "UPDATE tree_heads SET tree_size = 'x'",
            "audit verify",
            "audit chain BROKEN: tree_heads x/",  # then the head's ts, its other key
        ),
        (
            "DELETE FROM chain_head",
            "audit verify",
            "the log's anchor (its row in chain_head) is missing or unreadable",
        ),
        (
            "UPDATE chain_head SET frontier = 'zz'",
            "audit verify",
            "the log's anchor (its row in chain_head) is missing or unreadable",
        ),
    ],
)
def test_a_damaged_value_is_named_with_exit_1_not_a_traceback(
    world: World, tmp_path: Path, statement: str, command: str, said: str
) -> None:
    pay(world)
    audit_service.sign_tree_head(world.ctx)
    copy = copy_of(world, tmp_path / "copy")
    with closing(sqlite3.connect(copy / "kym.db")) as raw:
        raw.execute(statement)
        raw.commit()
    done = checks(copy)[command]
    assert done.returncode == 1, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    assert said in done.stderr.splitlines()[0], done.stderr


def test_a_value_the_checks_cannot_read_is_exit_1_in_one_line(tmp_path: Path) -> None:
    """What the type scan does not name still ends in one line, not a traceback."""
    import click
    from click.testing import CliRunner

    from gateway.cli_checks import readable
    from gateway.db import Database

    db = Database(f"sqlite:///{tmp_path / 'kym.db'}")

    @click.command()
    def read() -> None:
        readable(db, lambda: int("x"))

    result = CliRunner().invoke(read)
    db.dispose()
    assert result.exit_code == 1
    assert "is damaged: a value the check cannot read (ValueError" in result.output


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("value", "shown"), [("'maybe'", "'maybe'"), ("2", "2")])
def test_a_boolean_column_holding_other_than_0_or_1_is_a_breach_naming_its_row(
    world: World, tmp_path: Path, value: str, shown: str
) -> None:
    """SQLAlchemy reads any such value as true, so the check would pass it; it names it."""
    pay(world)
    copy = copy_of(world, tmp_path / "copy")
    with closing(sqlite3.connect(copy / "kym.db")) as raw:
        [(account,)] = raw.execute(
            "SELECT id FROM wallet_accounts WHERE kind = 'wallet' ORDER BY id LIMIT 1"
        ).fetchall()
        raw.execute(
            f"UPDATE wallet_accounts SET debits_must_not_exceed_credits = {value} WHERE id = ?",
            (account,),
        )
        raw.commit()
    done = checks(copy)["ledger check"]
    assert done.returncode == 1, done.stderr[-2000:]
    assert done.stderr.splitlines() == [
        f"BREACH types: wallet_accounts {account}: debits_must_not_exceed_credits holds "
        f"{shown}, not a Boolean (0 or 1)"
    ], done.stderr[-2000:]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize("content", ["empty", "another program's"])
def test_a_database_without_kyms_schema_is_one_line_and_exit_2(
    world: World, tmp_path: Path, content: str
) -> None:
    """Not "no such table": which file it is, that it holds no KYM schema, and what to do."""
    where = tmp_path / "d"
    where.mkdir()
    (where / "kym.db").touch()  # the empty file alone: not "no signing certificate" either
    if content != "empty":
        shutil.copytree(world.ctx.settings.data_dir / "ca", where / "ca")
        with closing(sqlite3.connect(where / "kym.db")) as raw:
            raw.execute("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT)")
            raw.commit()
    for command, done in checks(where).items():
        assert done.returncode == 2, (command, done.stderr[-2000:])
        assert done.stderr.splitlines() == [
            f"kym: sqlite:///{where / 'kym.db'} has no KYM schema (not migrated, or not KYM's "
            "database): kym serve with the same --data-dir/--database-url creates and migrates "
            "it; or give the database kym serve uses"
        ], (command, done.stderr[-2000:])
