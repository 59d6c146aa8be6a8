"""Which database errors are the database's failure, never the data's, and how background
loops log them: out of room or I/O (`resource_fault`: a full disk), or the session lost
(`database_fault`: the server ended it, crashed or restarts). The order path keeps such orders
and tries again (`gateway.mqtt.workers`); the loops say it once every FAULT_LOG_EVERY_S
(`FaultLog`), not with a traceback a round."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from sqlalchemy.exc import DBAPIError

# PostgreSQL's classes 53 (insufficient resources: disk_full, out_of_memory, ...) and 58 (system
# errors: io_error, ...); SQLite's primary codes SQLITE_NOMEM, SQLITE_READONLY, SQLITE_IOERR and
# SQLITE_FULL ("database or disk is full").
RESOURCE_SQLSTATE_CLASSES = ("53", "58")
RESOURCE_SQLITE_CODES = {7, 8, 10, 13}
# PostgreSQL's class 08 (connection exceptions) and the server ending a session: an
# administrator's command, a crash of another server process (a PANIC, as when a WAL segment
# cannot be written for lack of room), or a server that is starting up or in recovery.
LOST_SQLSTATE_PREFIXES = ("08", "57P01", "57P02", "57P03")
FAULT_LOG_EVERY_S = 30.0


def resource_fault(exc: BaseException) -> bool:
    """Whether a database error says the database ran out of room or could not do its I/O (a
    full disk, no memory, a read-only or failing file), not that the data was wrong."""
    for seen in _causes(exc):
        sqlstate = getattr(seen, "sqlstate", None)
        if isinstance(sqlstate, str) and sqlstate.startswith(RESOURCE_SQLSTATE_CLASSES):
            return True
        code = getattr(seen, "sqlite_errorcode", None)
        if isinstance(code, int) and code & 0xFF in RESOURCE_SQLITE_CODES:
            return True
    return False


def database_fault(exc: BaseException) -> bool:
    """Whether an error is the database's failure, never the data's: out of room or I/O
    (`resource_fault`), unreachable, or the session lost (the server ended it, crashed or
    restarts: a PostgreSQL PANIC ends every session)."""
    return resource_fault(exc) or _session_lost(exc)


def _session_lost(exc: BaseException) -> bool:
    for seen in _causes(exc):
        if isinstance(seen, DBAPIError) and seen.connection_invalidated:
            return True
        sqlstate = getattr(seen, "sqlstate", "")  # psycopg's errors have one, maybe None
        if sqlstate is None and type(seen).__name__ == "OperationalError":
            return True  # psycopg's own, with no server's answer: refused, or cut off
        if isinstance(sqlstate, str) and sqlstate.startswith(LOST_SQLSTATE_PREFIXES):
            return True
    return False


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """The error, the driver's under it, and what caused those (eight at most)."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return
        yield seen
        seen = getattr(seen, "orig", None) or seen.__cause__


class FaultLog:
    """A background loop's log of what fails: each failure of its own with its traceback, but
    while the database fails it (`database_fault`: down, restarting, its disk full), one line
    a chore every FAULT_LOG_EVERY_S instead of a traceback a round."""

    def __init__(self, logger: logging.Logger, prefix: str) -> None:
        self.logger, self.prefix = logger, prefix
        self._said: dict[str, float] = {}  # chore -> when the database's failure was logged

    def failed(self, what: str, failure: Exception) -> None:
        if not database_fault(failure):
            self.logger.error("%s%s failed", self.prefix, what, exc_info=failure)
            return
        self.seldom(f"{what} failed", failure)

    def seldom(self, what: str, failure: BaseException | str) -> None:
        """`what` and the failure in one line, at most once every FAULT_LOG_EVERY_S."""
        now = time.monotonic()
        if now - self._said.get(what, -FAULT_LOG_EVERY_S) >= FAULT_LOG_EVERY_S:
            self._said[what] = now
            why = failure if isinstance(failure, str) else one_line(failure)
            self.logger.warning("%s%s: %s", self.prefix, what, why)


def one_line(exc: BaseException) -> str:
    """A database error as one line: the driver's message, without SQLAlchemy's statement."""
    orig = getattr(exc, "orig", None) or exc
    return str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
