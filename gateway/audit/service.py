"""Use cases of the transparency log: sign tree heads, serve heads and proofs, verify it all."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Protocol

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from joserfc.jwk import ECKey, OKPKey
from sqlalchemy import Connection

from devices import keystore, wire
from gateway.audit import heads, store
from gateway.audit.heads import TreeHead
from gateway.audit.verify import Problem, verify_log
from gateway.db import Database
from gateway.errors import Invalid, NotFound

# Heads are signed at most this often, and within one housekeeping round of it while entries
# are added: the contract asks for one at least every 10 seconds.
TREE_HEAD_INTERVAL_S = 5


class LogContext(Protocol):
    """What these use cases need of `gateway.context.Context`."""

    @property
    def db(self) -> Database: ...

    @property
    def pki(self) -> keystore.Pki: ...

    @property
    def clock(self) -> Callable[[], datetime]: ...

    @property
    def signer_jose(self) -> ECKey | OKPKey: ...


def sign_tree_head_if_due(
    ctx: LogContext, interval: timedelta = timedelta(seconds=TREE_HEAD_INTERVAL_S)
) -> str | None:
    """For the housekeeper: sign a head when the log grew and the latest head is `interval`
    old, or signed later than now, or there is none; the new head's JWS, or None when none
    was due."""

    def due(conn: Connection, *, lock: bool) -> TreeHead | None:
        size, root, _frontier = store.log_state(conn, lock=lock)
        latest, now = store.latest_head(conn), store.unix_seconds(ctx.clock())
        if latest is not None and (
            latest[0].tree_size >= size or 0 <= now - latest[0].ts < interval.total_seconds()
        ):
            return None  # a head ahead of now (the clock stepped back) makes nothing wait
        return TreeHead(size, root, now)

    with ctx.db.read() as conn:  # most rounds end here, without taking the write lock
        if due(conn, lock=False) is None:
            return None

    def work(conn: Connection) -> str | None:
        head = due(conn, lock=True)  # again, serialised with appends and other signers
        return None if head is None else _sign(ctx, conn, head)

    return ctx.db.run(work)


def sign_tree_head(ctx: LogContext, since: int = 0) -> str:
    """A signed head of the log as it is now: the latest one kept of this size when it was
    signed at `since` or later, else one signed now and kept, also when the size was signed
    before (the signer's certificate renewed since, see `latest_tree_head`): every head handed
    out is in `tree_heads`, where `kym audit verify` checks it and what a client shows of it
    can be proven."""

    def work(conn: Connection) -> str:
        size, root, _frontier = store.log_state(conn, lock=True)
        existing = store.head_of_size(conn, size)
        if existing is not None and existing[0].ts >= since:
            return existing[1]
        head = TreeHead(size, root, store.unix_seconds(ctx.clock()))
        if existing is not None and head.ts <= existing[0].ts:
            return existing[1]  # the clock is behind the head kept: none later to sign
        return _sign(ctx, conn, head)

    return ctx.db.run(work)


def latest_tree_head(ctx: LogContext) -> str:
    """The latest signed head (`GET /v1/audit/tree-head`); the first one is signed on demand.
    One signed before the signer's certificate became valid (it is renewed, same key, at a
    start-up) does not verify against it at its `ts`, as a client checks it: a head of the log
    as it is now is signed and kept instead (of the same size and root when it has not grown),
    once a size and renewal."""
    with ctx.db.read() as conn:
        latest = store.latest_head(conn)
    if latest is None:
        return sign_tree_head(ctx)
    if latest[0].ts < (since := signer_since(ctx)):
        return sign_tree_head(ctx, since)
    return latest[1]


def signer_since(ctx: LogContext) -> int:
    """When the signer's certificate became valid, Unix seconds: a head signed earlier does not
    verify against it."""
    return store.unix_seconds(ctx.pki.signer.certificate.not_valid_before_utc)


def tree_head_covering(ctx: LogContext, tree_size: int, since: int = 0) -> tuple[TreeHead, str]:
    """The latest signed head when it covers `tree_size` entries and was signed at `since` or
    later, else one signed now. `since`: when the signer's certificate became valid
    (`signer_since`; a bundle's verifier checks it at the head's `ts`)."""
    with ctx.db.read() as conn:
        latest = store.latest_head(conn)
    if latest is not None and latest[0].tree_size >= tree_size and latest[0].ts >= since:
        return latest
    token = sign_tree_head(ctx, since)
    return heads.verify(token, ctx.pki.signer.private_key.public_key(), ctx.signer_jose), token


def consistency(ctx: LogContext, first: int, second: int) -> list[str]:
    """The RFC 9162 consistency proof between two signed tree sizes, as lowercase hex."""
    if not 0 <= first <= second:
        raise Invalid("from must be at least 0 and at most to")
    with ctx.db.read() as conn:
        for size in (first, second):
            if size and store.head_of_size(conn, size) is None:
                raise NotFound(f"no tree head of size {size} was signed")
        return [node.hex() for node in store.consistency_proof(conn, first, second)]


def inclusion_proofs(conn: Connection, indexes: list[int], tree_size: int) -> list[list[str]]:
    """Each entry's inclusion proof in the tree of `tree_size` entries, as lowercase hex."""
    return [[h.hex() for h in store.inclusion_proof(conn, i, tree_size)] for i in indexes]


def verify_audit(db: Database, signer: wire.PublicKey) -> tuple[int, Problem | None]:
    """(number of entries, the first bad entry and why, or None when the log is intact), read
    from one snapshot while the gateway may go on appending."""
    with db.snapshot() as conn:
        return verify_log(conn, signer)


def signer_public_key(data_dir: Path) -> wire.PublicKey | None:
    """The public key of the gateway's signing certificate in a data dir, if there is one."""
    path = keystore.PkiPaths.under(data_dir).signer_cert
    if not path.is_file():
        return None
    key = x509.load_pem_x509_certificate(path.read_bytes()).public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey)
    return key


def _sign(ctx: LogContext, conn: Connection, head: TreeHead) -> str:
    token = heads.sign(head, ctx.pki.signer.private_key, ctx.signer_jose)
    store.insert_head(conn, head, token)
    return token
