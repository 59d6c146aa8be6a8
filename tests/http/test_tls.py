"""`kym serve --http-tls` and `--http-cert/--http-key`: a real process, real HTTPS requests."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography import x509

from devices.ca import server_names as names_for
from gateway.server import free_port
from tests.support.gateway import ADMIN_TOKEN
from tests.support.openssl import openssl_ok

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


def kym_serve(
    tmp_path: Path, http: int, *flags: str | Path, host: str = "127.0.0.1"
) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "gateway.cli", "serve", "--data-dir", tmp_path / "data"]
    command += ["--http", f"{host}:{http}", "--mqtt", f"127.0.0.1:{free_port()}"]
    command += ["--broker", "embedded", *flags]
    env = {**os.environ, "KYM_ADMIN_TOKEN": ADMIN_TOKEN}
    with (tmp_path / "serve.log").open("wb") as log:  # the child keeps its own descriptor
        return subprocess.Popen(
            list(map(str, command)), stdout=log, stderr=subprocess.STDOUT, env=env
        )


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[int, list[subprocess.Popen[bytes]]]]:
    processes: list[subprocess.Popen[bytes]] = []
    yield free_port(), processes
    for process in processes:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)


def wait_listening(port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert process.poll() is None, log.read_text()
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise AssertionError(f"kym serve did not listen on {port}: {log.read_text()}")


def served_certificate(port: int) -> x509.Certificate:
    pem = ssl.get_server_certificate(("127.0.0.1", port))
    return x509.load_pem_x509_certificate(pem.encode())


def verified(cadata: str) -> ssl.SSLContext:
    context = ssl.create_default_context(cadata=cadata)
    assert context.check_hostname and context.verify_mode == ssl.CERT_REQUIRED
    return context


def test_http_tls_serves_a_certificate_that_get_v1_ca_verifies(
    tmp_path: Path, served: tuple[int, list[subprocess.Popen[bytes]]]
) -> None:
    http, processes = served
    processes.append(kym_serve(tmp_path, http, "--http-tls"))
    wait_listening(http, processes[0], tmp_path / "serve.log")
    base = f"https://127.0.0.1:{http}"
    bundle = httpx.get(f"{base}/v1/ca", verify=False).text  # first contact, like curl -k
    assert bundle == (tmp_path / "data" / "ca" / "bundle.pem").read_text()
    with httpx.Client(base_url=base, verify=verified(bundle)) as client:
        assert client.get("/v1/ca").text == bundle
        created = client.post("/v1/owners", json={"name": "Ada", "timezone": "UTC"}, headers=ADMIN)
        assert created.status_code == 201
    names = served_certificate(http).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert [str(ip) for ip in names.value.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"{base}/v1/ca", verify=ssl.create_default_context())
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{http}/v1/ca")


def test_http_tls_on_a_wildcard_address_names_localhost_loopback_and_the_hostname(
    tmp_path: Path, served: tuple[int, list[subprocess.Popen[bytes]]]
) -> None:
    """0.0.0.0 is where it listens, not a name any client verifies: the certificate also names
    what a client connects to, and the log says so."""
    http, processes = served
    processes.append(kym_serve(tmp_path, http, "--http-tls", host="0.0.0.0"))
    wait_listening(http, processes[0], tmp_path / "serve.log")
    names = served_certificate(http).extensions.get_extension_for_class(x509.SubjectAlternativeName)
    hostname = socket.gethostname()
    assert names.value.get_values_for_type(x509.DNSName) == ["localhost", hostname]
    addresses = [str(ip) for ip in names.value.get_values_for_type(x509.IPAddress)]
    assert addresses == ["0.0.0.0", "127.0.0.1"]  # the --http host too, as the contract says
    bundle = (tmp_path / "data" / "ca" / "bundle.pem").read_text()
    for base in (f"https://localhost:{http}", f"https://127.0.0.1:{http}"):
        assert httpx.get(f"{base}/v1/ca", verify=verified(bundle)).text == bundle
    said = (tmp_path / "serve.log").read_text()
    assert f"its certificate names 0.0.0.0, localhost, 127.0.0.1, {hostname}" in said


@pytest.mark.parametrize(
    ("host", "names"),
    [
        ("0.0.0.0", ("0.0.0.0", "localhost", "127.0.0.1", "box.example")),
        ("::", ("::", "localhost", "127.0.0.1", "::1", "box.example")),
        ("127.0.0.1", ("127.0.0.1",)),
        ("10.1.2.3", ("10.1.2.3",)),
        ("api.example", ("api.example",)),
    ],
)
def test_the_http_certificate_names_the_host_or_for_a_wildcard_what_clients_connect_to(
    host: str, names: tuple[str, ...]
) -> None:
    assert names_for(host, "box.example") == names


@pytest.mark.parametrize("hostname", ["", "localhost", "not a name", "bad_name!"])
def test_a_hostname_that_is_no_dns_name_is_left_out(hostname: str) -> None:
    assert names_for("0.0.0.0", hostname) == ("0.0.0.0", "localhost", "127.0.0.1")


def test_http_cert_and_key_serve_ones_own_certificate(
    tmp_path: Path, served: tuple[int, list[subprocess.Popen[bytes]]]
) -> None:
    cert, key = tmp_path / "own.crt", tmp_path / "own.key"
    openssl_ok(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-subj", "/CN=own", "-addext", "subjectAltName=IP:127.0.0.1", "-days", "2",
        "-keyout", key, "-out", cert,
    )  # fmt: skip
    http, processes = served
    processes.append(kym_serve(tmp_path, http, "--http-cert", cert, "--http-key", key))
    wait_listening(http, processes[0], tmp_path / "serve.log")
    assert served_certificate(http) == x509.load_pem_x509_certificate(cert.read_bytes())
    answer = httpx.get(f"https://127.0.0.1:{http}/v1/ca", verify=verified(cert.read_text()))
    assert answer.status_code == 200 and "BEGIN CERTIFICATE" in answer.text


def test_http_cert_without_its_key_is_refused_in_one_line(tmp_path: Path) -> None:
    cert = tmp_path / "own.crt"
    cert.write_text("x")
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "serve", "--data-dir", str(tmp_path / "d")]
        + ["--http-cert", str(cert)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == "kym: --http-cert and --http-key go together"


def test_a_cert_or_key_that_will_not_serve_is_one_line_naming_the_flag_before_starting(
    tmp_path: Path,
) -> None:
    """ssl said "[SSL] PEM lib (_ssl.c:3905)", after the CAs, the broker and the workers."""
    cert, key, other = tmp_path / "own.crt", tmp_path / "own.key", tmp_path / "other.key"
    openssl_ok(
        "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
        "-subj", "/CN=own", "-days", "2", "-keyout", key, "-out", cert,
    )  # fmt: skip
    openssl_ok("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", other)
    for given_cert, given_key, said in [
        (key, key, f"--http-cert {key} holds no PEM certificate"),
        (cert, cert, f"--http-key {cert} holds no PEM private key"),
        (cert, other, f"--http-key {other} is not the key of --http-cert {cert}"),
    ]:
        done = subprocess.run(
            [sys.executable, "-m", "gateway.cli", "serve", "--data-dir", str(tmp_path / "d")]
            + ["--http-cert", str(given_cert), "--http-key", str(given_key)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr[-2000:]
        [line] = done.stderr.splitlines()
        assert said in line, line
        assert not (tmp_path / "d").exists()


def test_the_sdk_talks_to_a_tls_gateway_given_its_ca_file(
    tmp_path: Path,
    served: tuple[int, list[subprocess.Popen[bytes]]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`kym device register --api-ca` and KYM_API_CA: GET /v1/ca saved to a file is the trust
    for a gateway serving with --http-tls (the system's store does not know its root)."""
    from devices.sdk.api import GatewayApi

    http, processes = served
    processes.append(kym_serve(tmp_path, http, "--http-tls"))
    wait_listening(http, processes[0], tmp_path / "serve.log")
    base = f"https://127.0.0.1:{http}"
    ca = tmp_path / "ca.pem"
    ca.write_text(httpx.get(f"{base}/v1/ca", verify=False).text)
    monkeypatch.delenv("KYM_API_CA", raising=False)
    with GatewayApi(base, ADMIN_TOKEN) as untrusting, pytest.raises(httpx.ConnectError):
        untrusting.request("GET", "/v1/ca")
    with GatewayApi(base, ADMIN_TOKEN, ca_file=ca) as api:
        assert api.request("GET", "/v1/ca") == ca.read_text()
    monkeypatch.setenv("KYM_API_CA", str(ca))
    with GatewayApi(base, ADMIN_TOKEN) as api:
        owner = api.request("POST", "/v1/owners", {"name": "Ada", "timezone": "UTC"}, expect=201)
        assert owner["id"]
