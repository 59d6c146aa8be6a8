"""Recourse and evidence on the real service layer (SQLite and PostgreSQL), as in
tests/service: orders are decided as a worker decides them, calls go through the HTTP API."""

from __future__ import annotations

from tests.support.clocked import clock, ctx, world

__all__ = ["clock", "ctx", "world"]
