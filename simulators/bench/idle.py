"""`kym bench --connected N`: N idle devices holding mutual-TLS MQTT connections.

Each idle device is registered through the API like any other (its own P-256 key, its own
CSR, its own certificate and identity), by a few threads at once. It then holds one MQTT
3.1.1 session, subscribed to its results, from an asyncio loop in a background thread: one
socket each, no thread per device. Connecting is bounded (`CONNECT_AT_ONCE` handshakes in
flight) so that the broker's listen backlog is not overrun. While they are connected, the
paying devices of `load` run as usual; the broker's resident memory is read from
/proc/<pid>/status before and after the idle devices connect.
"""

from __future__ import annotations

import asyncio
import resource
import ssl
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from rich.console import Console

from devices.contract import results_topic
from devices.sdk.api import GatewayApi, Registration, refresh_trust
from devices.sdk.identity import generate_key, make_csr
from simulators.bench.packets import DISCONNECT, PINGREQ, connect_packet, subscribe_packet
from simulators.fleet import Broker

REGISTER_THREADS = 8
CONNECT_AT_ONCE = 64
PING_EVERY_S = 240.0
CONNECT_WITHIN_S = 30.0


@dataclass(frozen=True)
class IdleDevice:
    device_id: str
    pem: Path  # its key and certificate, for `load_cert_chain`


def register_idle(
    api_url: str, integrator_key: str, owner_id: str, count: int, directory: Path
) -> tuple[list[IdleDevice], Path]:
    """Register `count` devices, `REGISTER_THREADS` at a time; them and the CA bundle."""
    directory.mkdir(parents=True, exist_ok=True)
    with GatewayApi(api_url, integrator_key) as api:
        refresh_trust(directory, api)

    def one(chunk: Sequence[int]) -> list[IdleDevice]:
        made = []
        with GatewayApi(api_url, integrator_key) as api:
            for n in chunk:
                key = generate_key("p256")
                serial = f"idle-{n}"
                registration = Registration(owner_id, "other", "bench", "idle", serial)
                registered = api.register_device(registration, make_csr(key, serial))
                pem = directory / f"{serial}.pem"
                key_pem = key.private_bytes(
                    serialization.Encoding.PEM,
                    serialization.PrivateFormat.PKCS8,
                    serialization.NoEncryption(),
                )
                pem.write_bytes(key_pem + registered.certificate.encode())
                made.append(IdleDevice(registered.id, pem))
        return made

    chunks = [range(i, count, REGISTER_THREADS) for i in range(REGISTER_THREADS)]
    with ThreadPoolExecutor(REGISTER_THREADS) as pool:
        devices = [d for part in pool.map(one, chunks) for d in part]
    return devices, directory / "ca-bundle.pem"


def raise_open_files(needed: int) -> None:
    """Lift this process's (and its children's) open-file limit to `needed`, if allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        limit = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))


def broker_rss_kb(pid: int) -> int | None:
    """The process's resident set size in kB (VmRSS), None if unreadable."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class IdleFleet:
    """The idle devices' connections, held by an asyncio loop in a daemon thread."""

    def __init__(self, broker: Broker, devices: list[IdleDevice], ca_bundle: Path) -> None:
        self.broker, self.devices, self.ca_bundle = broker, devices, ca_bundle
        self.connected = 0
        self.failures: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._streams: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._pinger: asyncio.Task[None] | None = None

    def connect_all(self, console: Console) -> float:
        """Connect and subscribe every idle device; seconds it took."""
        self._thread.start()
        started = time.perf_counter()
        future = asyncio.run_coroutine_threadsafe(self._connect_all(), self._loop)
        with console.status(f"connecting {len(self.devices)} idle devices") as status:
            while not future.done():
                status.update(f"idle devices connected: {self.connected}/{len(self.devices)}")
                time.sleep(0.5)
        future.result()
        return time.perf_counter() - started

    async def _connect_all(self) -> None:
        gate = asyncio.Semaphore(CONNECT_AT_ONCE)
        await asyncio.gather(*(self._hold(device, gate) for device in self.devices))
        self._pinger = self._loop.create_task(self._ping())

    async def _hold(self, device: IdleDevice, gate: asyncio.Semaphore) -> None:
        async with gate:  # the context too: made up front, 10,000 would stall the loop
            context = ssl.create_default_context(cafile=str(self.ca_bundle))
            context.check_hostname = False  # the broker's certificate names the gateway's host
            context.load_cert_chain(str(device.pem))
            try:
                await asyncio.wait_for(self._session(device, context), CONNECT_WITHIN_S)
            except (OSError, TimeoutError, asyncio.IncompleteReadError, ValueError) as exc:
                self.failures.append(f"{device.device_id}: {exc!r}")

    async def _session(self, device: IdleDevice, context: ssl.SSLContext) -> None:
        reader, writer = await asyncio.open_connection(
            self.broker.host, self.broker.port, ssl=context
        )
        writer.write(connect_packet(device.device_id))
        connack = await reader.readexactly(4)
        if connack[0] != 0x20 or connack[3] != 0:
            writer.close()
            raise ValueError(f"CONNACK {connack.hex()}")
        writer.write(subscribe_packet(results_topic(device.device_id)))
        suback = await reader.readexactly(5)
        if suback[0] != 0x90 or suback[4] > 2:
            writer.close()
            raise ValueError(f"SUBACK {suback.hex()}")
        self._streams.append((reader, writer))
        self.connected += 1

    async def _ping(self) -> None:
        while True:
            await asyncio.sleep(PING_EVERY_S)
            for _, writer in self._streams:
                writer.write(PINGREQ)

    def still_open(self) -> int:
        """Connections the broker has not closed."""
        return sum(1 for r, w in self._streams if not (r.at_eof() or w.is_closing()))

    def close(self) -> None:
        async def shut() -> None:
            if self._pinger is not None:
                self._pinger.cancel()
            for _, writer in self._streams:
                writer.write(DISCONNECT)
                writer.close()

        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(shut(), self._loop).result(timeout=30)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
