"""Settings for every `kym` command: flags win over `KYM_*` variables, which win over defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def quantity(
    default: float,
    unit: str,
    *,
    gt: float | None = None,
    ge: float | None = None,
    le: float | None = None,
) -> Any:
    """A numeric setting's field; its `unit` (kept in the field's JSON schema) is what the help
    texts show beside the default."""
    return Field(default=default, json_schema_extra={"unit": unit}, gt=gt, ge=ge, le=le)


# The URL schemes of the databases KYM runs on (SQLAlchemy's; plain postgresql is psycopg too).
DATABASE_SCHEMES = ("sqlite", "sqlite+pysqlite", "postgresql", "postgresql+psycopg")


class Settings(BaseSettings):
    """One place for configuration; built by the CLI entry point and passed down."""

    model_config = SettingsConfigDict(env_prefix="KYM_", extra="ignore")

    data_dir: Path = Path("./kym-data")
    database_url: str | None = None
    http: str = "127.0.0.1:8080"
    http_tls: bool = False  # serve the API over TLS with a certificate from the service root
    http_cert: Path | None = None  # or with one's own certificate (chain) and key
    http_key: Path | None = None
    broker_url: str | None = None  # before `mqtt`, which it makes ignored (validated first)
    mqtt: str = "127.0.0.1:8883"
    broker: Literal["auto", "mosquitto", "embedded"] = "auto"
    admin_token: str | None = None
    trust_domain: str = "kym.local"
    device_cert_days: int = quantity(90, "days", ge=1, le=3650)  # a device certificate's life
    rotation_grace_s: int = quantity(7 * 24 * 3600, "seconds", ge=0)  # a rotated-out cert's grace
    gateway_workers: int = quantity(1, "workers", ge=1, le=16)
    worker_index: int = quantity(0, "identity number", ge=0, le=15)  # kym-gateway-<n>
    device_rate: float = quantity(10.0, "orders per second", gt=0)  # per device, sustained
    device_burst: int = quantity(50, "orders", ge=1)  # per device at once, before the rate
    dispute_response_days: float = quantity(7.0, "days", gt=0)  # a payee's time to answer
    webhook_allow_private: bool = False  # webhooks may reach loopback and private addresses
    crypto_helpers: bool = True  # child processes verify orders and sign results (orders/)

    @field_validator("http", "mqtt")
    @classmethod
    def _host_port(cls, value: str, info: ValidationInfo) -> str:
        """HOST:PORT with a port from 1 to 65535 (checked before anything is started); `mqtt`
        is ignored, and so not checked, when an external broker is given (`broker_url`)."""
        if info.field_name == "mqtt" and info.data.get("broker_url"):
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{value!r} is not HOST:PORT (e.g. 127.0.0.1:8080)")
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_url(cls, value: str | None) -> str | None:
        if value is not None:
            broker = urlsplit(value)
            try:
                port = broker.port
            except ValueError:
                port = -1
            if broker.scheme not in ("mqtts", "ssl", "tls") or not broker.hostname or port == -1:
                raise ValueError(f"{value!r} must look like mqtts://HOST:PORT")
        return value

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        """SQLite or PostgreSQL through psycopg, the two databases KYM runs on (any other URL
        ended in a missing driver's traceback, or SQLAlchemy's "Can't load plugin")."""
        if value and value.partition("://")[0] not in DATABASE_SCHEMES:
            hint = (
                " (postgres:// is spelt postgresql+psycopg://)"
                if value.startswith("postgres:")
                else ""
            )
            raise ValueError(
                f"{value.partition('://')[0]!r} is not a database KYM runs on{hint}: give "
                "postgresql+psycopg://USER@HOST/DB or sqlite:///PATH"
            )
        return value

    def resolved_database_url(self) -> str:
        """The database to use: the flag or variable, else SQLite in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'kym.db').resolve()}"


def unit_and_default(name: str) -> str | None:
    """`days, default 90` for a numeric setting, from its field; None for any other."""
    field = Settings.model_fields[name]
    extra = field.json_schema_extra
    unit = extra.get("unit") if isinstance(extra, dict) else None
    if unit is None:
        return None
    default = field.default if isinstance(field.default, int) else f"{field.default:g}"
    return f"{unit}, default {default}"


def split_host_port(value: str, default_port: int) -> tuple[str, int]:
    """Parse `HOST:PORT` (IPv6 as `[::1]:PORT`) into its parts."""
    host, sep, port = value.rpartition(":")
    if not sep:
        return value, default_port
    return host.strip("[]"), int(port)
