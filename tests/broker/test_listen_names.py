"""A broker listening on a wildcard address (0.0.0.0, ::) serves a certificate naming what
devices connect to: localhost, the loopback address and this machine's hostname, beside the
address itself (the contract: it names the --mqtt or --listen host). Before, it named only
0.0.0.0, which no TLS client can verify a connection against."""

from __future__ import annotations

import os
import re
import signal
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509

from gateway.server import free_port
from tests.http.test_tls import wait_listening
from tests.support.gateway import ADMIN_TOKEN


def names_in(certificate: x509.Certificate) -> list[str]:
    names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    addresses = [str(ip) for ip in names.get_values_for_type(x509.IPAddress)]
    return [*names.get_values_for_type(x509.DNSName), *addresses]


def test_mosquitto_config_on_a_wildcard_address_names_what_devices_connect_to(
    tmp_path: Path,
) -> None:
    out = tmp_path / "broker"
    command = [sys.executable, "-m", "gateway.cli", "mosquitto-config", "--data-dir"]
    command += [str(tmp_path / "data"), "--listen", "0.0.0.0:8883", "--out", str(out)]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    found = re.search(r"^certfile (.+)$", (out / "mosquitto.conf").read_text(), re.MULTILINE)
    assert found is not None
    certificate = x509.load_pem_x509_certificate(Path(found.group(1)).read_bytes())
    hostname = socket.gethostname()
    assert names_in(certificate) == ["localhost", hostname, "0.0.0.0", "127.0.0.1"]


def test_the_embedded_broker_on_a_wildcard_address_verifies_at_localhost(tmp_path: Path) -> None:
    mqtt = free_port()
    command = [sys.executable, "-m", "gateway.cli", "serve", "--data-dir", str(tmp_path / "data")]
    command += ["--http", f"127.0.0.1:{free_port()}", "--mqtt", f"0.0.0.0:{mqtt}"]
    command += ["--broker", "embedded"]
    env = {**os.environ, "KYM_ADMIN_TOKEN": ADMIN_TOKEN}
    with (tmp_path / "serve.log").open("wb") as log:
        serve = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        wait_listening(mqtt, serve, tmp_path / "serve.log")
        bundle = (tmp_path / "data" / "ca" / "bundle.pem").read_text()
        for name in ("localhost", "127.0.0.1"):
            context = ssl.create_default_context(cadata=bundle)
            # the server's certificate is checked here; the broker then wants a client
            # certificate, which this probe does not have: refused later, not for the name
            with (
                socket.create_connection(("127.0.0.1", mqtt), timeout=10) as raw,
                context.wrap_socket(raw, server_hostname=name) as tls,
            ):
                certificate = tls.getpeercert(binary_form=True)
            assert certificate is not None
        elsewhere = ssl.create_default_context(cadata=bundle)
        with (
            socket.create_connection(("127.0.0.1", mqtt), timeout=10) as raw,
            pytest.raises(ssl.SSLCertVerificationError, match="mismatch"),
        ):
            elsewhere.wrap_socket(raw, server_hostname="not-this-host.example")
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(timeout=30)
