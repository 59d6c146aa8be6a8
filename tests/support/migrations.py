"""Migrating a test database to a given revision, to write rows as an older gateway did."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from alembic import command
from alembic.config import Config

from gateway.db import MIGRATIONS, Database


def upgrade_to(database_url: str, revision: str) -> None:
    """Run the migrations up to `revision` (e.g. "0018") on the database at `database_url`."""
    _migrate(database_url, command.upgrade, revision)


@contextmanager
def database_at(database_url: str, revision: str) -> Iterator[Database]:
    """The database at `database_url` migrated up to `revision`, disposed of afterwards."""
    upgrade_to(database_url, revision)
    db = Database(database_url)
    try:
        yield db
    finally:
        db.dispose()


def downgrade_to(database_url: str, revision: str) -> None:
    """Undo the migrations after `revision` on the database at `database_url`."""
    _migrate(database_url, command.downgrade, revision)


def _migrate(database_url: str, step: Callable[[Config, str], None], revision: str) -> None:
    db = Database(database_url)
    with db.transaction() as conn:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = conn
        step(config, revision)
    db.dispose()
