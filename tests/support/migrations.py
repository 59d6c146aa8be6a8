"""Migrating a test database to a given revision, to write rows as an older gateway did."""

from __future__ import annotations

from collections.abc import Callable

from alembic import command
from alembic.config import Config

from gateway.db import MIGRATIONS, Database


def upgrade_to(database_url: str, revision: str) -> None:
    """Run the migrations up to `revision` (e.g. "0018") on the database at `database_url`."""
    _migrate(database_url, command.upgrade, revision)


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
