"""Migrating a test database to a given revision, to write rows as an older gateway did."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from gateway.db import MIGRATIONS, Database


def upgrade_to(database_url: str, revision: str) -> None:
    """Run the migrations up to `revision` (e.g. "0018") on the database at `database_url`."""
    db = Database(database_url)
    with db.transaction() as conn:
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        config.attributes["connection"] = conn
        command.upgrade(config, revision)
    db.dispose()
