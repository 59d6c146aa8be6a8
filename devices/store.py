"""SQL adapter for the device registry. Functions take a Connection and never commit."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from devices.registry import Device, DeviceCertificate, Status


class UtcDateTime(sa.types.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every database (SQLite hands back naive ones)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and dialect.name == "sqlite":
            return value.astimezone(UTC).replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = sa.MetaData()
devices = sa.Table(
    "devices",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("owner_id", sa.String),
    sa.Column("integrator_id", sa.String),
    sa.Column("kind", sa.String),
    sa.Column("manufacturer", sa.String),
    sa.Column("model", sa.String),
    sa.Column("serial_number", sa.String),
    sa.Column("currency", sa.String),
    sa.Column("category", sa.String),
    sa.Column("status", sa.String),
    sa.Column("attested", sa.Boolean),
    sa.Column("created_at", UtcDateTime),
    sa.Column("updated_at", UtcDateTime),
)
certificates = sa.Table(
    "device_certificates",
    metadata,
    sa.Column("serial", sa.String, primary_key=True),
    sa.Column("device_id", sa.String),
    sa.Column("certificate_pem", sa.Text),
    sa.Column("not_before", UtcDateTime),
    sa.Column("not_after", UtcDateTime),
    sa.Column("issued_at", UtcDateTime),
    sa.Column("first_used_at", UtcDateTime),
    sa.Column("status", sa.String),
    sa.Column("revoked_at", UtcDateTime),
)
# Each public key (by `ca.key_fingerprint`) and the one device it identifies, for good: the
# primary key is what keeps two registrations or rotations racing with one key from both passing.
device_keys = sa.Table(
    "device_keys",
    metadata,
    sa.Column("fingerprint", sa.String, primary_key=True),
    sa.Column("device_id", sa.String),
    sa.Column("bound_at", UtcDateTime),
)
attestation_cas = sa.Table(
    "attestation_cas",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("integrator_id", sa.String),
    sa.Column("certificate_pem", sa.Text),
    sa.Column("created_at", UtcDateTime),
)
ca_state = sa.Table(
    "ca_state",
    metadata,
    sa.Column("name", sa.String, primary_key=True),
    sa.Column("crl_number", sa.BigInteger),
    sa.Column("crl_issued_at", UtcDateTime),
)


def insert_device(conn: Connection, device: Device) -> None:
    """Record a newly registered device (raises IntegrityError on a duplicate serial)."""
    row = {**device.__dict__, "status": device.status.value, "updated_at": device.created_at}
    conn.execute(devices.insert().values(**row))


def get_device(conn: Connection, device_id: str, *, lock: bool = False) -> Device | None:
    """The device with this id, if any; `lock`: its row locked until the transaction ends
    (PostgreSQL; SQLite's write transaction holds the whole database)."""
    query = devices.select().where(devices.c.id == device_id)
    row = conn.execute(query.with_for_update() if lock else query).mappings().first()
    return None if row is None else _device(row)


def serial_exists(conn: Connection, manufacturer: str, serial_number: str) -> bool:
    """Whether a device with this manufacturer and serial number is registered."""
    query = sa.select(devices.c.id).where(
        devices.c.manufacturer == manufacturer, devices.c.serial_number == serial_number
    )
    return conn.execute(query).first() is not None


def set_status(conn: Connection, device_id: str, status: Status, now: datetime) -> None:
    """Move the device to `status`."""
    conn.execute(
        devices.update()
        .where(devices.c.id == device_id)
        .values(status=status.value, updated_at=now)
    )


def set_attested(conn: Connection, device_id: str, attested: bool, now: datetime) -> None:
    """Whether the device's newest key was attested by its manufacturer."""
    conn.execute(
        devices.update().where(devices.c.id == device_id).values(attested=attested, updated_at=now)
    )


def insert_certificate(conn: Connection, cert: DeviceCertificate) -> None:
    """Record a certificate issued to a device."""
    conn.execute(certificates.insert().values(**cert.__dict__, status="active"))


def key_holder(conn: Connection, fingerprint: str) -> str | None:
    """The id of the device this key is bound to, if any."""
    query = sa.select(device_keys.c.device_id).where(device_keys.c.fingerprint == fingerprint)
    return conn.execute(query).scalar_one_or_none()


def bind_key(conn: Connection, fingerprint: str, device_id: str, now: datetime) -> None:
    """Bind a key to a device for good (raises IntegrityError if another transaction bound it
    first)."""
    conn.execute(
        device_keys.insert().values(fingerprint=fingerprint, device_id=device_id, bound_at=now)
    )


def list_certificates(conn: Connection, device_id: str) -> list[DeviceCertificate]:
    """Every certificate ever issued to the device, oldest first."""
    query = (
        certificates.select()
        .where(certificates.c.device_id == device_id)
        .order_by(certificates.c.issued_at)
    )
    return [_certificate(row) for row in conn.execute(query).mappings()]


def mark_certificate_used(conn: Connection, serial: str, now: datetime) -> None:
    """Note the first use of a certificate (it retires the older one after a rotation)."""
    conn.execute(
        certificates.update()
        .where(certificates.c.serial == serial, certificates.c.first_used_at.is_(None))
        .values(first_used_at=now)
    )


def retire_older_certificates(conn: Connection, serial: str, now: datetime) -> list[str]:
    """Revoke (as superseded) the certificates of `serial`'s device issued before it: its first
    use retires them for signing (`registry.valid_certificates`), and in the CRL they stop
    opening a broker session as the device too (a leaked old key is often why one rotates).
    Returns their serials."""
    newer = sa.select(certificates.c.device_id, certificates.c.issued_at).where(
        certificates.c.serial == serial
    )
    found = conn.execute(newer).first()
    if found is None:
        return []
    older = sa.select(certificates.c.serial).where(
        certificates.c.device_id == found.device_id,
        certificates.c.issued_at < found.issued_at,
        certificates.c.revoked_at.is_(None),
    )
    serials = list(conn.execute(older).scalars())
    if serials:
        conn.execute(
            certificates.update()
            .where(certificates.c.serial.in_(serials))
            .values(revoked_at=now, status="superseded")
        )
    return serials


def revoke_certificates(conn: Connection, device_id: str, now: datetime) -> list[str]:
    """Revoke every unrevoked certificate of the device; returns their serials."""
    query = sa.select(certificates.c.serial).where(
        certificates.c.device_id == device_id, certificates.c.revoked_at.is_(None)
    )
    serials = list(conn.execute(query).scalars())
    conn.execute(
        certificates.update()
        .where(certificates.c.serial.in_(serials))
        .values(revoked_at=now, status="revoked")
    )
    return serials


def revoked_certificates(conn: Connection) -> list[tuple[int, datetime]]:
    """(serial, revoked_at) of every revoked certificate, for the CRL."""
    query = sa.select(certificates.c.serial, certificates.c.revoked_at).where(
        certificates.c.revoked_at.is_not(None)
    )
    return [(int(serial, 16), at) for serial, at in conn.execute(query)]


def next_crl_number(conn: Connection, now: datetime) -> int:
    """Take the next CRL number (strictly increasing, also across processes)."""
    conn.execute(
        ca_state.update()
        .where(ca_state.c.name == "device")
        .values(crl_number=ca_state.c.crl_number + 1, crl_issued_at=now)
    )
    query = sa.select(ca_state.c.crl_number).where(ca_state.c.name == "device")
    return int(conn.execute(query).scalar_one())


def add_attestation_ca(
    conn: Connection, ca_id: str, integrator_id: str, pem: str, now: datetime
) -> None:
    """Record a manufacturer CA that an integrator trusts for attestation."""
    conn.execute(
        attestation_cas.insert().values(
            id=ca_id, integrator_id=integrator_id, certificate_pem=pem, created_at=now
        )
    )


def list_attestation_cas(conn: Connection, integrator_id: str) -> list[str]:
    """PEMs of the integrator's manufacturer CAs."""
    query = sa.select(attestation_cas.c.certificate_pem).where(
        attestation_cas.c.integrator_id == integrator_id
    )
    return list(conn.execute(query).scalars())


def _certificate(row: Any) -> DeviceCertificate:
    fields = {k: v for k, v in row.items() if k != "status"}
    return DeviceCertificate(**fields)


def certificates_of(conn: Connection, device_ids: set[str]) -> dict[str, list[DeviceCertificate]]:
    """The unrevoked certificates of these devices and those that a device's revocation
    withdrew (not those a rotation superseded), oldest first, in one query."""
    query = (
        certificates.select()
        .where(
            certificates.c.device_id.in_(list(device_ids)),
            sa.or_(certificates.c.revoked_at.is_(None), certificates.c.status == "revoked"),
        )
        .order_by(certificates.c.issued_at)
    )
    found: dict[str, list[DeviceCertificate]] = {}
    for row in conn.execute(query).mappings():
        found.setdefault(row["device_id"], []).append(_certificate(row))
    return found


# Built once: every order batch runs them, and building a statement costs more than running it.
_DEVICES_IN = devices.select().where(devices.c.id.in_(sa.bindparam("ids", expanding=True)))
_LOCK_DEVICES_IN = _DEVICES_IN.order_by(devices.c.id).with_for_update()


def lock_devices(conn: Connection, device_ids: set[str], lock: set[str]) -> dict[str, Device]:
    """Load these devices, locking the rows of `lock` in id order (one writer per device)."""
    found: dict[str, Device] = {}
    if lock:
        for row in conn.execute(_LOCK_DEVICES_IN, {"ids": sorted(lock)}).mappings():
            found[row["id"]] = _device(row)
    rest = sorted(device_ids - lock)
    if rest:
        for row in conn.execute(_DEVICES_IN, {"ids": rest}).mappings():
            found[row["id"]] = _device(row)
    return found


def _device(row: Any) -> Device:
    fields = {k: v for k, v in row.items() if k != "updated_at"}
    return Device(**{**fields, "status": Status(row["status"])})


def device_ids_of_owner(conn: Connection, owner_id: str) -> list[str]:
    """Ids of the owner's devices."""
    query = sa.select(devices.c.id).where(devices.c.owner_id == owner_id)
    return list(conn.execute(query).scalars())


def list_devices(
    conn: Connection,
    party_column: str,
    party_id: str,
    status: str | None,
    limit: int,
    after: tuple[datetime, str] | None,
) -> list[Device]:
    """Up to `limit` devices whose `party_column` ("owner_id" or "integrator_id") is
    `party_id`, newest first, after the (created_at, id) of a previous page's last."""
    column = devices.c[party_column]
    query = devices.select().where(column == party_id)
    if status is not None:
        query = query.where(devices.c.status == status)
    if after is not None:
        at, device_id = after
        query = query.where(
            sa.or_(
                devices.c.created_at < at,
                sa.and_(devices.c.created_at == at, devices.c.id < device_id),
            )
        )
    query = query.order_by(devices.c.created_at.desc(), devices.c.id.desc()).limit(limit)
    return [_device(row) for row in conn.execute(query).mappings()]


def newest_certificates(conn: Connection, device_ids: list[str]) -> dict[str, DeviceCertificate]:
    """Each device's most recently issued certificate (revoked or not), in one query."""
    query = (
        certificates.select()
        .where(certificates.c.device_id.in_(device_ids))
        .order_by(certificates.c.issued_at)
    )
    return {row["device_id"]: _certificate(row) for row in conn.execute(query).mappings()}
