"""The in-process gateway the tests build: its admin token."""

from __future__ import annotations

ADMIN_TOKEN = "test-admin-token"
