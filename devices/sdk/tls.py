"""Mutual TLS for paho clients, and why a connection failed (`why_unreachable`): the context
`paho.mqtt.client.Client.tls_set` would build, with one difference: a socket whose
handshake fails is closed at once.

paho 2 wraps the TCP socket and calls `do_handshake()`; when that raises (a broker killed or
restarted mid-handshake), the wrapped socket is dropped without being closed, and the garbage
collector closes it later with a ResourceWarning. A device or gateway that reconnects through a
broker restart would leak one file descriptor per failed try until then.
"""

from __future__ import annotations

import socket
import ssl
from pathlib import Path

import paho.mqtt.client as mqtt


class _ClosingOnFailedHandshake(ssl.SSLSocket):
    def do_handshake(self, block: bool = False) -> None:
        try:
            super().do_handshake(block)
        except BaseException:
            self.close()
            raise


def client_context(
    ca_bundle: Path | str, certfile: Path | str, keyfile: Path | str
) -> ssl.SSLContext:
    """A TLS client context: the broker's certificate must chain to `ca_bundle` and name the
    host connected to; the client presents `certfile` with `keyfile`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # CERT_REQUIRED, hostname checked
    context.load_cert_chain(str(certfile), str(keyfile))
    context.load_verify_locations(str(ca_bundle))
    context.sslsocket_class = _ClosingOnFailedHandshake
    return context


def use_mutual_tls(
    client: mqtt.Client, ca_bundle: Path | str, certfile: Path | str, keyfile: Path | str
) -> None:
    """Connect `client` over mutual TLS (`client_context`)."""
    client.tls_set_context(client_context(ca_bundle, certfile, keyfile))
    client.tls_insecure_set(False)


def why_unreachable(host: str, port: int, probe_s: float) -> str:
    """Why no MQTT session could be opened, in one line: a plain TCP connect tells nothing
    listening from a TLS handshake that failed (paho does not say which)."""
    where = f"{host}:{port}"
    try:
        socket.create_connection((host, port), probe_s).close()
    except OSError as exc:
        return f"could not open a connection to the broker at {where}: {exc}"
    return (
        f"the TLS handshake with the broker at {where} failed (is this device's "
        "certificate, or the broker's CA bundle, the right one?)"
    )
