"""`kym ledger check` and `kym audit verify` on a read-only copy of a SQLite data dir, as an
auditor gets one from a backup (contract section 1): they check it without writing beside it.

The database runs in WAL mode, in which SQLite opens a file only by making `-wal` and `-shm`
files next to it, or finding them there. The copy is made read-only with `chattr +i` when the
tests run as root (whom mode bits do not stop), with mode bits otherwise."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from tests.support.cli import kym
from tests.support.world import World

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
WAL_SUFFIXES = ("-wal", "-shm")


def pay(world: World) -> None:
    shop = world.party("merchants", {"name": "shop", "category": "fuel"})
    car = world.device("car", rules={"currency": "EUR"})
    result = car.send(car.order(type="pay", payee=shop["id"], amount=100, currency="EUR"))
    assert result["status"] == "approved", result


def copy_of(world: World, where: Path) -> Path:
    """The data dir's database (every commit in the file, as a backup holds it) and its CAs."""
    source = Path(world.ctx.db.url.removeprefix("sqlite:///"))
    with closing(sqlite3.connect(source)) as raw:
        busy, _, _ = raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    assert busy == 0
    where.mkdir()
    shutil.copyfile(source, where / "kym.db")
    shutil.copytree(world.ctx.settings.data_dir / "ca", where / "ca")
    assert (where / "kym.db").read_bytes()[18:20] == b"\x02\x02"  # a WAL-mode database
    return where


def tamper(connection: sqlite3.Connection) -> None:
    connection.execute("UPDATE wallet_accounts SET credits_posted = credits_posted + 1")
    connection.execute("UPDATE audit_log SET actor = 'someone' WHERE leaf_index = 0")
    connection.commit()


@contextmanager
def read_only(directory: Path) -> Iterator[None]:
    """The directory and the files in it read-only, for root too, until the block ends."""
    paths = [str(p) for p in (*directory.iterdir(), directory)]
    if os.geteuid() != 0:
        for path in paths:
            os.chmod(path, 0o555 if Path(path).is_dir() else 0o444)
        undo = ["chmod", "u+w", *paths]
    else:
        if shutil.which("chattr") is None:
            pytest.skip("root ignores mode bits, and there is no chattr")
        undo = ["chattr", "-i", *paths]
        done = subprocess.run(["chattr", "+i", *paths], capture_output=True, text=True)
        if done.returncode != 0:
            subprocess.run(undo, capture_output=True)
            pytest.skip(f"chattr +i failed: {done.stderr.strip()}")
    try:
        with pytest.raises(OSError):
            (directory / "probe").touch()  # truly read-only, for this user
        yield
    finally:
        subprocess.run(undo, check=True)


def checks(copy: Path) -> dict[str, subprocess.CompletedProcess[str]]:
    return {
        " ".join(command): kym(*command, "--data-dir", str(copy))
        for command in (("ledger", "check"), ("audit", "verify"))
    }


def test_the_checks_run_on_a_read_only_copy_and_write_nothing_beside_it(
    world: World, tmp_path: Path
) -> None:
    pay(world)
    copy = copy_of(world, tmp_path / "copy")
    before = sorted(p.name for p in copy.iterdir())
    with read_only(copy):
        done = checks(copy)
    codes = {command: completed.returncode for command, completed in done.items()}
    assert codes == {"ledger check": 0, "audit verify": 0}, [c.stderr for c in done.values()]
    assert "ledger reconciled: every invariant holds" in done["ledger check"].stdout
    assert "audit chain intact" in done["audit verify"].stdout
    assert sorted(p.name for p in copy.iterdir()) == before  # no -wal, no -shm


def test_a_tampered_read_only_copy_is_reported(world: World, tmp_path: Path) -> None:
    pay(world)
    copy = copy_of(world, tmp_path / "copy")
    with closing(sqlite3.connect(copy / "kym.db")) as raw:
        tamper(raw)
    assert not any((copy / f"kym.db{suffix}").exists() for suffix in WAL_SUFFIXES)
    with read_only(copy):
        done = checks(copy)
    codes = {command: completed.returncode for command, completed in done.items()}
    assert codes == {"ledger check": 1, "audit verify": 1}, [c.stderr for c in done.values()]
    assert "BREACH" in done["ledger check"].stderr
    assert "audit chain BROKEN at entry 0" in done["audit verify"].stderr


def test_a_read_only_copy_with_its_wal_is_checked_with_the_commits_in_the_wal(
    world: World, tmp_path: Path
) -> None:
    """A copy of a data dir in use holds its last commits in `kym.db-wal` only: they are read,
    not skipped (here, tampering that only the WAL holds)."""
    pay(world)
    live, copy = copy_of(world, tmp_path / "live"), tmp_path / "copy"
    shutil.copytree(live, copy, ignore=shutil.ignore_patterns("kym.db*"))
    with closing(sqlite3.connect(live / "kym.db")) as raw:
        raw.execute("PRAGMA wal_autocheckpoint=0")
        tamper(raw)
        for suffix in ("", *WAL_SUFFIXES):
            shutil.copyfile(live / f"kym.db{suffix}", copy / f"kym.db{suffix}")
    assert (copy / "kym.db-wal").stat().st_size > 0
    with read_only(copy):
        done = checks(copy)
    codes = {command: completed.returncode for command, completed in done.items()}
    assert codes == {"ledger check": 1, "audit verify": 1}, [c.stdout for c in done.values()]
