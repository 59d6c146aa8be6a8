from sqlalchemy import text

from gateway.db import Database


def test_migrations_create_the_audit_anchor(db: Database) -> None:
    with db.read() as conn:
        head = conn.execute(text("SELECT seq FROM chain_head WHERE name = 'audit'")).scalar_one()
    assert head == 0


def test_migrate_twice_is_harmless(db: Database) -> None:
    db.migrate()
    with db.read() as conn:
        version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
    assert version
