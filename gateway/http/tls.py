"""TLS for the HTTP API: `--http-tls` (a certificate from the service root naming the `--http`
host, so that `GET /v1/ca` verifies it) or `--http-cert FILE --http-key FILE` (one's own)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from devices import keystore
from gateway.settings import Settings, split_host_port


class TlsSettingsInvalid(ValueError):
    """`--http-cert` without `--http-key`, or the other way round."""


@dataclass(frozen=True)
class HttpTls:
    """What uvicorn needs to serve HTTPS; both None for plain HTTP."""

    certfile: str | None = None
    keyfile: str | None = None

    @property
    def scheme(self) -> str:
        return "http" if self.certfile is None else "https"


def http_tls(settings: Settings, pki: keystore.Pki, now: datetime) -> HttpTls:
    """The certificate and key the API serves with, issuing the service-root one if asked."""
    if settings.http_cert is not None or settings.http_key is not None:
        if settings.http_cert is None or settings.http_key is None:
            raise TlsSettingsInvalid("--http-cert and --http-key go together")
        return HttpTls(str(settings.http_cert), str(settings.http_key))
    if not settings.http_tls:
        return HttpTls()
    host, _ = split_host_port(settings.http, 8080)
    cert_path, key_path = keystore.ensure_server_certificate(pki, host, now, name="http")
    return HttpTls(str(cert_path), str(key_path))
