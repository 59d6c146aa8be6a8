"""Mosquitto's dynamic-security plugin: who may do what on a Mosquitto that `kym` configures.

Mosquitto's `acl_file` never refuses a SUBSCRIBE (it filters at delivery), so a device could
join the gateways' shared subscription and take a share of every device's orders. The
dynamic-security plugin does refuse: by default nobody may publish, receive or subscribe
(unsubscribing stays allowed); the `gateway` group's role lets the worker identities
(`kym-gateway-<n>`) share the orders and answer every device; each device has a role
`dev:<id>` and a client entry that lets it publish its orders and subscribe to exactly its
results; the `kym-broker-admin-<n>` identities may send `$CONTROL` commands. Mosquitto 2.0.11
has no `%u` in these rules, hence one role per device.

The document is written whole at broker start (one `$CONTROL` command rewrites the whole file
and blocks the broker, about 60 ms per device at 5,000 entries); day-to-day changes (a new
device, a revoked one) go through `DynsecAdmin`. Deleting a client also ends its live session.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from devices import ca, keystore
from devices.contract import ORDERS_SHARED, orders_topic, results_topic
from devices.files import write_atomic
from devices.sdk.tls import use_mutual_tls

log = logging.getLogger("kym.dynsec")
PLUGIN_PATHS = (
    "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/aarch64-linux-gnu/mosquitto_dynamic_security.so",
    "/usr/lib/mosquitto_dynamic_security.so",
    "/usr/local/lib/mosquitto_dynamic_security.so",
)
GATEWAY_IDENTITIES = 16  # kym-gateway-0 .. -15 (one per worker)
ADMIN_IDENTITIES = 16  # kym-broker-admin-<n>: the process whose first worker is n uses n
CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = CONTROL_TOPIC + "/response"
_ALREADY = ("already exists", "not found")  # idempotent outcomes of create and delete


class DynsecError(RuntimeError):
    """The broker did not carry out a dynamic-security command."""


def find_plugin() -> str | None:
    """The plugin's shared object, if installed (it ships with Mosquitto 2.0)."""
    return next((p for p in PLUGIN_PATHS if os.path.exists(p)), None)


def gateway_identity(n: int) -> str:
    """The MQTT identity (certificate CN) of gateway worker `n`."""
    return f"kym-gateway-{n}"


def admin_identity(n: int) -> str:
    """The MQTT identity that may administer the broker's access rules for process `n`."""
    return f"kym-broker-admin-{n}"


def _acl(kind: str, topic: str) -> dict[str, Any]:
    return {"acltype": kind, "topic": topic, "priority": 0, "allow": True}


def device_role(device_id: str) -> dict[str, Any]:
    """`dev:<id>`: publish its orders, subscribe to and receive exactly its results."""
    return {
        "rolename": f"dev:{device_id}",
        "acls": [
            _acl("publishClientSend", orders_topic(device_id)),
            _acl("subscribeLiteral", results_topic(device_id)),
            _acl("publishClientReceive", results_topic(device_id)),
        ],
    }


def _device_client(device_id: str) -> dict[str, Any]:
    return {"username": device_id, "roles": [{"rolename": f"dev:{device_id}"}]}


def _fixed_roles() -> list[dict[str, Any]]:
    orders, results = orders_topic("+"), results_topic("+")
    return [
        {
            "rolename": "gateway",
            "acls": [
                _acl("subscribeLiteral", ORDERS_SHARED),
                _acl("subscribeLiteral", orders),
                _acl("publishClientReceive", orders),
                _acl("publishClientSend", results),
            ],
        },
        {
            "rolename": "admin",
            "acls": [
                _acl("subscribeLiteral", RESPONSE_TOPIC),
                _acl("publishClientSend", CONTROL_TOPIC),
                _acl("publishClientReceive", RESPONSE_TOPIC),
            ],
        },
    ]


def document(device_ids: Iterable[str]) -> dict[str, Any]:
    """The whole `dynsec.json` for these devices (group members listed in the group, since a
    `groups` key on a client is ignored when the file is loaded)."""
    ids = sorted(set(device_ids))
    gateways = [gateway_identity(n) for n in range(GATEWAY_IDENTITIES)]
    admins = [admin_identity(n) for n in range(ADMIN_IDENTITIES)]
    return {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": [{"username": name, "roles": []} for name in gateways + admins]
        + [_device_client(i) for i in ids],
        "groups": [
            {
                "groupname": "gateway",
                "roles": [{"rolename": "gateway"}],
                "clients": [{"username": name} for name in gateways],
            },
            {
                "groupname": "admin",
                "roles": [{"rolename": "admin"}],
                "clients": [{"username": name} for name in admins],
            },
        ],
        "roles": _fixed_roles() + [device_role(i) for i in ids],
    }


def write_document(path: Path, device_ids: Iterable[str]) -> None:
    """Write `dynsec.json` atomically, readable and writable by this user only (the broker runs
    as this user: a file it cannot write keeps later changes in memory only)."""
    write_atomic(path, json.dumps(document(device_ids), indent=1).encode(), 0o600)


def admin_paths(pki: keystore.Pki, n: int) -> tuple[Path, Path]:
    """Where the certificate and key of admin identity `n` live in DIR."""
    tls = pki.paths.tls_dir
    return tls / f"broker-admin-{n}.crt", tls / f"broker-admin-{n}.key"


def ensure_admin_identity(pki: keystore.Pki, n: int, now: datetime) -> tuple[Path, Path]:
    """Admin identity `n`'s client certificate (from the device CA, which the broker trusts
    for clients), issued on first use and re-issued a month before it expires."""
    cert_path, key_path = admin_paths(pki, n)
    if cert_path.exists() and key_path.exists():
        current = x509.load_pem_x509_certificate(cert_path.read_bytes())
        if (current.not_valid_after_utc - now).days > 30:
            return cert_path, key_path
    key = ca.new_private_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, admin_identity(n))])
    csr = x509.CertificateSigningRequestBuilder().subject_name(name).sign(key, hashes.SHA256())
    certificate = ca.issue_device_certificate(
        pki.device_issuing, csr, admin_identity(n), pki.trust_domain, now, validity_days=365
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key_pem)
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def is_configured(pki: keystore.Pki) -> bool:
    """True once `kym mosquitto-config` (or a managed Mosquitto) wrote an admin identity."""
    return all(p.exists() for p in admin_paths(pki, 0))


def admin_client(pki: keystore.Pki, n: int) -> mqtt.Client:
    """A paho client (not yet connected) as admin identity `n`, over mutual TLS; connect it for
    one batch of commands only (the identity is the client id: a standing connection would be
    taken over by the next)."""
    cert, key = ensure_admin_identity(pki, n, datetime.now().astimezone())
    client = mqtt.Client(
        mqtt.CallbackAPIVersion.VERSION2,
        client_id=admin_identity(n),
        protocol=mqtt.MQTTv311,
        reconnect_on_failure=False,
    )
    use_mutual_tls(client, pki.paths.bundle, cert, key)
    return client


class DynsecAdmin:
    """Sends `$CONTROL` commands as one admin identity, one connection per batch.

    A short connection per batch, rather than a standing one, because the identity is the
    client id: two standing connections of one identity would take each other over.
    """

    def __init__(
        self, pki: keystore.Pki, host: str, port: int, n: int = 0, timeout_s: float = 5.0
    ) -> None:
        self.pki, self.host, self.port, self.n = pki, host, port, n
        self.timeout_s = timeout_s
        self._lock = threading.Lock()

    def allow_device(self, device_id: str) -> None:
        """Give a device its role and client entry (idempotent)."""
        role = device_role(device_id)
        self.run(
            [
                {"command": "createRole", **role},
                {"command": "createClient", **_device_client(device_id)},
            ]
        )

    def forget_device(self, device_id: str) -> None:
        """Delete a device's entry (ending its live session) and its role (idempotent)."""
        self.run(
            [
                {"command": "deleteClient", "username": device_id},
                {"command": "deleteRole", "rolename": f"dev:{device_id}"},
            ]
        )

    def list_clients(self) -> list[str]:
        """Every client entry's username."""
        found = self.run([{"command": "listClients", "verbose": False, "count": -1}])
        return list(found[0].get("data", {}).get("clients", []))

    def run(self, commands: list[dict[str, Any]], attempts: int = 3) -> list[dict[str, Any]]:
        """Carry out `commands` in one message; raises DynsecError when the broker refuses."""
        with self._lock:
            for attempt in range(attempts):
                try:
                    return self._run_once(commands)
                except (OSError, TimeoutError) as exc:
                    if attempt == attempts - 1:
                        raise DynsecError(f"no answer from the broker's dynsec: {exc}") from exc
                    time.sleep(0.2 * (attempt + 1))
        raise AssertionError("unreachable")

    def _run_once(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        correlation = uuid.uuid4().hex
        tagged = [{**c, "correlationData": f"{correlation}:{i}"} for i, c in enumerate(commands)]
        answers: queue.Queue[bytes] = queue.Queue()
        ready = threading.Event()
        client = admin_client(self.pki, self.n)
        client.on_connect = lambda c, *_: c.subscribe(RESPONSE_TOPIC, qos=1)
        client.on_subscribe = lambda c, u, mid, codes, p: ready.set()
        client.on_message = lambda c, u, message: answers.put(message.payload)
        try:
            client.connect(self.host, self.port, keepalive=10)
            client.loop_start()
            if not ready.wait(self.timeout_s):
                raise TimeoutError("no SUBACK for the dynsec response topic")
            client.publish(CONTROL_TOPIC, json.dumps({"commands": tagged}), qos=1)
            return _responses(answers, correlation, len(commands), self.timeout_s)
        finally:
            client.disconnect()
            client.loop_stop()
            client._reset_sockets()  # paho keeps them until garbage collection otherwise


def _responses(
    answers: queue.Queue[bytes], correlation: str, count: int, timeout_s: float
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no dynsec response")
        try:
            payload = answers.get(timeout=remaining)
        except queue.Empty as exc:
            raise TimeoutError("no dynsec response") from exc
        mine = [
            r
            for r in json.loads(payload).get("responses", [])
            if str(r.get("correlationData", "")).startswith(correlation + ":")
        ]
        if len(mine) < count:
            continue
        for response in mine:
            error = response.get("error")
            if error and not any(ok in str(error).lower() for ok in _ALREADY):
                raise DynsecError(f"{response.get('command')}: {error}")
        return mine
