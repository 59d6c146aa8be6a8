"""The gateway's MQTT reader alone: CPU per flood message, paho's reader against ours.

Starts a plain Mosquitto over TLS on a free port (a throwaway CA in a temp dir, anonymous
clients), subscribes a receiver to every device's orders with QoS 1 and manual acknowledgement,
and floods `--messages` QoS 1 messages from one device with benchmarks/raw_flood.py. Each
receiver asks the same token bucket as the gateway (10 a second, bursts of 50) and acknowledges
what it refuses: `paho` as the gateway did before (paho's reader, an `MQTTMessage`, one PUBACK
per refused message), `ours` with `gateway.mqtt.receive.ReceivingClient`. Prints the receiving
process's CPU per message from the first message to the last, the wall time, and Mosquitto's
CPU for the run. Measures, never asserts:

    .venv/bin/python benchmarks/receive_bench.py [--messages 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import datetime as dt
import ipaddress
import multiprocessing
import os
import resource
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from devices.contract import device_of_orders_topic
from gateway.broker.mosquitto import find_mosquitto
from gateway.mqtt.receive import ReceivingClient
from gateway.orders.ratelimit import RateLimiter, Verdict

sys.path.insert(0, str(Path(__file__).parent))  # run as a script: its sibling module
from raw_flood import RawFlooder  # noqa: E402

TOPICS = "kym/v1/devices/+/orders"


def write_tls(home: Path) -> None:
    """ca.pem, server.pem and server.key for 127.0.0.1 in `home`."""
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    until = now + dt.timedelta(days=1)
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "receive-bench CA")])
    ca = (
        x509.CertificateBuilder(ca_name, ca_name, ca_key.public_key(), 1, now, until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    ip = x509.IPAddress(ipaddress.ip_address("127.0.0.1"))
    server = (
        x509.CertificateBuilder(ca_name, name, key.public_key(), 2, now, until)  # issuer first
        .add_extension(x509.SubjectAlternativeName([ip]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    (home / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (home / "server.pem").write_bytes(server.public_bytes(serialization.Encoding.PEM))
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    (home / "server.key").write_bytes(pem)


def start_mosquitto(home: Path, port: int) -> subprocess.Popen[bytes]:
    binary = find_mosquitto()
    assert binary is not None, "Mosquitto is not installed"
    config = [
        "user root" if os.geteuid() == 0 else "",
        "allow_anonymous true",
        "max_inflight_messages 200",  # as the managed Mosquitto
        "max_queued_messages 100000",
        "set_tcp_nodelay true",
        f"listener {port} 127.0.0.1",
        f"cafile {home / 'ca.pem'}",
        f"certfile {home / 'server.pem'}",
        f"keyfile {home / 'server.key'}",
        "tls_version tlsv1.2",
    ]
    (home / "mosquitto.conf").write_text("\n".join(config) + "\n")
    broker = subprocess.Popen([binary, "-c", str(home / "mosquitto.conf")], stderr=subprocess.PIPE)
    for _ in range(50):
        try:
            socket.create_connection(("127.0.0.1", port), 0.1).close()
            return broker
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("Mosquitto did not start")


def receiver(kind: str, home: Path, port: int, messages: int) -> tuple[float, float]:
    """Subscribe, flood from a child process, and return (CPU µs per message, wall seconds)."""
    limiter, seen, done = RateLimiter(10, 50), [0], threading.Event()
    marks: list[tuple[float, float]] = []

    def admitted(topic: str) -> bool:
        seen[0] += 1
        if seen[0] in (1, messages):
            usage = resource.getrusage(resource.RUSAGE_SELF)
            marks.append((usage.ru_utime + usage.ru_stime, time.perf_counter()))
            if seen[0] == messages:
                done.set()
        device_id = device_of_orders_topic(topic) or ""
        return limiter.take(device_id, time.monotonic()) is Verdict.ADMIT

    client = subscribed_client(kind, home, port, admitted)
    flood = multiprocessing.get_context("spawn").Process(
        target=flood_process, args=(home, port, messages)
    )
    flood.start()
    done.wait(120)
    flood.join(30)
    client.disconnect()
    client.loop_stop()
    (cpu0, wall0), (cpu1, wall1) = marks
    return (cpu1 - cpu0) * 1e6 / messages, wall1 - wall0


def subscribed_client(kind: str, home: Path, port: int, admitted: Any) -> mqtt.Client:
    if kind == "paho":
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="rx", manual_ack=True)

        def on_message(c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
            if not admitted(message.topic):
                c.ack(message.mid, message.qos)

        client.on_message = on_message
    else:
        client = ReceivingClient(mqtt.CallbackAPIVersion.VERSION2, client_id="rx", manual_ack=True)
        client.on_publish_packet = lambda topic, _payload, _mid, _qos: admitted(topic)
    client.tls_set(ca_certs=str(home / "ca.pem"))
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    ready = threading.Event()
    client.on_connect = lambda c, *_: c.subscribe(TOPICS, qos=1)
    client.on_subscribe = lambda *_: ready.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    assert ready.wait(10), "no SUBACK"
    return client


def flood_process(home: Path, port: int, messages: int) -> None:
    context = ssl.create_default_context(cafile=str(home / "ca.pem"))
    flooder = RawFlooder("127.0.0.1", port, context, "flooder")
    flooder.flood([b"x" * 500] * messages, linger_s=0.2)
    flooder.close()


def broker_cpu_s(broker: subprocess.Popen[bytes]) -> float:
    fields = Path(f"/proc/{broker.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime, in clock ticks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kym-receive-") as tmp:
        home, port = Path(tmp), free_port()
        write_tls(home)
        broker = start_mosquitto(home, port)
        try:
            for _ in range(args.repeat):
                for kind in ("paho", "ours"):
                    before = broker_cpu_s(broker)
                    cpu_us, wall_s = receiver(kind, home, port, args.messages)
                    mosquitto_ms = (broker_cpu_s(broker) - before) * 1000
                    print(
                        f"{kind}: {cpu_us:.1f} µs of receiver CPU a message, "
                        f"{args.messages} in {wall_s:.2f} s, Mosquitto {mosquitto_ms:.0f} ms CPU"
                    )
        finally:
            broker.terminate()
            broker.wait(10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    main()
