"""What an operator's data dir gives away to other local users: the generated admin token and
every private key are readable by the owner only (CONTRACT.md section 1: mode 0600)."""

from __future__ import annotations

import stat
from pathlib import Path

from gateway.server import build_context
from gateway.settings import Settings


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_generated_admin_token_and_private_keys_are_the_owners_alone(tmp_path: Path) -> None:
    data = tmp_path / "data"
    settings = Settings(data_dir=data, database_url=f"sqlite:///{tmp_path / 'k.db'}")
    ctx = build_context(settings.model_copy(update={"admin_token": None}))  # not from the env
    try:
        token = data / "admin-token"
        assert _mode(token) == 0o600
        assert len(token.read_text().strip()) >= 32  # not guessable
        assert _mode(data) & 0o077 == 0, oct(_mode(data))
        keys = [p for p in data.rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes()]
        assert keys, "no private key in the data dir"
        assert {str(p): oct(_mode(p)) for p in keys if _mode(p) & 0o077} == {}
    finally:
        ctx.db.dispose()


def test_a_given_admin_token_is_not_written_to_disk(tmp_path: Path) -> None:
    data, token = tmp_path / "data", "kym_admin_given-by-the-operator-0123456789"
    settings = Settings(data_dir=data, database_url=f"sqlite:///{tmp_path / 'k.db'}")
    ctx = build_context(settings.model_copy(update={"admin_token": token}))
    try:
        assert not (data / "admin-token").exists()
        assert not [p for p in data.rglob("*") if p.is_file() and token.encode() in p.read_bytes()]
    finally:
        ctx.db.dispose()
