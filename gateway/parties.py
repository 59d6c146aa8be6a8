"""Parties (admin, owners, integrators, merchants) and their API keys. Pure."""

from __future__ import annotations

import functools
import hashlib
import secrets
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

PARTY_KINDS = ("owner", "integrator", "merchant")
ID_PREFIX = {"owner": "own", "integrator": "int", "merchant": "mer"}
KEY_PREFIX_CHARS = 12  # what `GET /v1/keys` shows of a key


@dataclass(frozen=True)
class Party:
    """Whoever an API key acts for: `kind` is admin, owner, integrator or merchant."""

    kind: str
    id: str

    @property
    def actor(self) -> str:
        """How the audit trail names this party."""
        return f"{self.kind}:{self.id}"

    @property
    def described(self) -> str:
        """The kind with its article, for messages: `an owner`, `a merchant`."""
        return with_article(self.kind)


ADMIN = Party(kind="admin", id="admin")


def with_article(kind: str) -> str:
    """`an owner`, `an integrator`, `an admin`, `a merchant`."""
    return f"{'an' if kind[:1] in ('a', 'e', 'i', 'o', 'u') else 'a'} {kind}"


def new_party_id(kind: str) -> str:
    """An opaque id such as `own_1f2e…`."""
    return f"{ID_PREFIX[kind]}_{secrets.token_hex(8)}"


def new_api_key() -> str:
    """A random API key (256 bits); it is shown once and only its hash is stored."""
    return f"kym_{secrets.token_urlsafe(32)}"


def new_key_id() -> str:
    """The public id of an API key (never the key)."""
    return f"key_{secrets.token_hex(8)}"


def hash_api_key(api_key: str) -> str:
    """SHA-256 of a key: enough for 256-bit random keys, which cannot be guessed or brute-forced."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def is_timezone(name: str) -> bool:
    """Whether `name` is an IANA timezone known to this system: a key of the time zone
    database (`Europe/Berlin`, `UTC`, also its links such as `Japan` or `GMT`), not any file
    that `ZoneInfo` can read (`posix/Europe/Berlin`, or `right/Europe/Berlin`, whose leap
    seconds Python reads as a wrong offset)."""
    if name not in _iana_names():
        return False
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return False
    return True


@functools.cache
def _iana_names() -> frozenset[str]:
    return frozenset(available_timezones())
