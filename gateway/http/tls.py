"""TLS for the HTTP API: `--http-tls` (a certificate from the service root naming the `--http`
host, so that `GET /v1/ca` verifies it) or `--http-cert FILE --http-key FILE` (one's own)."""

from __future__ import annotations

import socket
import ssl
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from devices import ca, keystore
from gateway.settings import Settings, split_host_port


class TlsSettingsInvalid(ValueError):
    """`--http-cert` without `--http-key`, or the other way round."""


@dataclass(frozen=True)
class HttpTls:
    """What uvicorn needs to serve HTTPS; both None for plain HTTP."""

    certfile: str | None = None
    keyfile: str | None = None
    names: tuple[str, ...] = field(default=())  # the hosts an issued certificate names

    @property
    def scheme(self) -> str:
        return "http" if self.certfile is None else "https"


def http_tls(settings: Settings, pki: keystore.Pki, now: datetime) -> HttpTls:
    """The certificate and key the API serves with, issuing the service-root one if asked."""
    if settings.http_cert is not None or settings.http_key is not None:
        if settings.http_cert is None or settings.http_key is None:
            raise TlsSettingsInvalid("--http-cert and --http-key go together")
        check_pair(str(settings.http_cert), str(settings.http_key))
        return HttpTls(str(settings.http_cert), str(settings.http_key))
    if not settings.http_tls:
        return HttpTls()
    host, _ = split_host_port(settings.http, 8080)
    names = ca.server_names(host, socket.gethostname())
    cert_path, key_path = keystore.ensure_server_certificate(pki, names, now, name="http")
    return HttpTls(str(cert_path), str(key_path), names)


def check_pair(certfile: str, keyfile: str) -> None:
    """Refuse, naming the flag at fault, a certificate and key that TLS cannot serve with: ssl
    said "[SSL] PEM lib (_ssl.c:3905)" for a file that is not PEM, once the rest had started."""
    if b"-----BEGIN CERTIFICATE-----" not in Path(certfile).read_bytes():
        raise TlsSettingsInvalid(f"--http-cert {certfile} holds no PEM certificate")
    if b"PRIVATE KEY-----" not in Path(keyfile).read_bytes():
        raise TlsSettingsInvalid(f"--http-key {keyfile} holds no PEM private key")
    try:  # an empty password: an encrypted key fails here instead of prompting on the terminal
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certfile, keyfile, password="")
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            why = f"--http-key {keyfile} is not the key of --http-cert {certfile}"
        else:
            why = f"--http-cert {certfile} and --http-key {keyfile} do not do for TLS: {exc}"
        raise TlsSettingsInvalid(f"{why} (the key unencrypted, both PEM)") from None
