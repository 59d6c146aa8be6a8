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
    """Why no MQTT session could be opened, in one line (paho does not say): nothing listening,
    a peer that never answers, one that does not speak TLS (a plain MQTT port), or a TLS
    handshake that failed on the certificates. Probed with a TCP connect and then a TLS
    handshake that checks nothing and shows no certificate, each within `probe_s`."""
    where = f"{host}:{port}"
    try:
        sock = socket.create_connection((host, port), probe_s)
    except OSError as exc:
        return f"could not open a connection to the broker at {where}: {exc}"
    with sock:
        return _why_handshake_failed(sock, where, probe_s)


def _why_handshake_failed(sock: socket.socket, where: str, probe_s: float) -> str:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname, context.verify_mode = False, ssl.CERT_NONE  # only: is it TLS?
    sock.settimeout(probe_s)
    try:
        context.wrap_socket(sock).close()
    except TimeoutError:
        return (
            f"the broker at {where} accepted the connection but did not answer a TLS "
            f"handshake within {probe_s:g} s (is it this gateway's MQTT port, and not stalled?)"
        )
    except (ssl.SSLEOFError, ConnectionError):
        return _not_tls(where, "it hung up on the handshake")
    except ssl.SSLError as exc:
        if exc.reason == "WRONG_VERSION_NUMBER":  # it answered, but not in TLS
            return _not_tls(where, "it answered, but not in TLS")
    except OSError as exc:
        return f"the connection to the broker at {where} failed: {exc}"
    return (
        f"the TLS handshake with the broker at {where} failed (is this device's "
        "certificate, or the broker's CA bundle, the right one?)"
    )


def _not_tls(where: str, what: str) -> str:
    return (
        f"the broker at {where} does not speak TLS: {what} (a plain MQTT port? devices "
        "connect over mutual TLS, to the gateway's mqtts:// address)"
    )
