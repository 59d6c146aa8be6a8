"""What Mosquitto does with shared subscriptions of persistent sessions (docs/durability.md).

Not a test (pytest does not collect it): a measurement to run again on another Mosquitto,
`python -m tests.faults.measure_shared_sessions [a b c d e f g]`. Each experiment starts its own
Mosquitto (plain TCP on a free port: TLS changes none of this), uses two members `g0`, `g1` of
`$share/kym/t/+/orders` with QoS 1 and publishes 100 messages over five topics.
"""

from __future__ import annotations

import getpass
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import paho.mqtt.client as mqtt

SHARED = "$share/kym/t/+/orders"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Broker:
    def __init__(self, persistence: bool = False) -> None:
        self.dir, self.port = Path(tempfile.mkdtemp(prefix="kym-measure-")), free_port()
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text(
            f"user {getpass.getuser()}\nlistener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"persistence {'true' if persistence else 'false'}\n"
            f"persistence_location {self.dir}/\nautosave_interval 1800\n"
            "max_queued_messages 100000\nmax_inflight_messages 100\n"
        )
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        self.process = subprocess.Popen([binary, "-c", str(self.conf)], stderr=subprocess.DEVNULL)
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", self.port), 0.1).close()
                return
            except OSError:
                time.sleep(0.05)

    def stop(self, signum: int = signal.SIGTERM) -> None:
        assert self.process is not None
        self.process.send_signal(signum)
        self.process.wait()


class Member:
    """A persistent session (unless `clean`) that subscribes to the shared filter."""

    def __init__(
        self, port: int, client_id: str, *, manual_ack: bool = False, clean: bool = False,
        subscribe: str | None = SHARED,
    ) -> None:  # fmt: skip
        self.got: list[tuple[bytes, bool]] = []
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean,
            manual_ack=manual_ack,
        )  # fmt: skip
        self.client.on_message = lambda _c, _u, m: self.got.append((m.payload, bool(m.dup)))
        granted = threading.Event()
        self.client.on_subscribe = lambda *_: granted.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if subscribe:
            self.client.subscribe(subscribe, qos=1)
            granted.wait(5)

    def kill(self) -> None:
        """Drop the TCP connection without a DISCONNECT, as a SIGKILLed process does."""
        sock = self.client.socket()
        assert isinstance(sock, socket.socket)
        sock.shutdown(socket.SHUT_RDWR)
        self.client.loop_stop()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def publish(port: int, count: int = 100) -> int:
    """Publish `count` QoS 1 messages; returns how many the broker acknowledged."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"pub-{time.time_ns()}")
    client.connect("127.0.0.1", port)
    client.loop_start()
    infos = [client.publish(f"t/d{n % 5}/orders", str(n), qos=1) for n in range(count)]
    for info in infos:
        info.wait_for_publish(5)
    client.disconnect()
    client.loop_stop()
    return sum(info.is_published() for info in infos)


def settle() -> None:
    time.sleep(1.0)


def one_member_offline() -> str:
    broker = Broker()
    g0, g1 = Member(broker.port, "g0"), Member(broker.port, "g1")
    g1.close()
    settle()
    acked = publish(broker.port)
    settle()
    online = len(g0.got)
    back = Member(broker.port, "g1", subscribe=None)
    settle()
    g0.close()
    back.close()
    broker.stop()
    return (
        f"a) one of two members offline: {acked} acknowledged, the online member got "
        f"{online}, the offline one {len(back.got)} when it came back"
    )


def all_members_offline() -> str:
    broker = Broker()
    for member in Member(broker.port, "g0"), Member(broker.port, "g1"):
        member.close()
    settle()
    acked = publish(broker.port)
    first = Member(broker.port, "g0", subscribe=None)
    settle()
    second = Member(broker.port, "g1", subscribe=None)
    settle()
    first.close()
    second.close()
    broker.stop()
    return (
        f"b) every member offline: {acked} acknowledged; g0 got {len(first.got)} when it "
        f"came back, then g1 {len(second.got)}"
    )


def killed_with_unacknowledged(clean: bool) -> str:
    broker = Broker()
    g0 = Member(broker.port, "g0", clean=clean)
    g1 = Member(broker.port, "g1", manual_ack=True, clean=clean)
    settle()
    publish(broker.port)
    settle()
    before, held = len(g0.got), len(g1.got)
    g1.kill()
    settle()
    other = len(g0.got) - before
    back = Member(broker.port, "g1", clean=clean, subscribe=None)
    settle()
    again, dup = len(back.got), sum(d for _, d in back.got)
    g0.close()
    back.close()
    broker.stop()
    kind = "clean-session" if clean else "persistent"
    return (
        f"c) a {kind} member killed holding {held} unacknowledged: the other member got "
        f"{other} of them; the same identity got {again} back on reconnect ({dup} with "
        f"DUP)"
    )


def broker_restart(persistence: bool, signum: int) -> str:
    broker = Broker(persistence)
    Member(broker.port, "g0").close()
    settle()
    acked = publish(broker.port)
    settle()
    broker.stop(signum)
    broker.start()
    back = Member(broker.port, "g0", subscribe=None)
    settle()
    back.close()
    broker.stop()
    name = signal.Signals(signum).name
    return (
        f"d) persistence {str(persistence).lower()}, broker stopped by {name}: {acked} "
        f"queued for the offline member before, {len(back.got)} delivered after the "
        f"restart"
    )


def retire_with_clean_session() -> str:
    broker = Broker()
    g0, g1 = Member(broker.port, "g0"), Member(broker.port, "g1")
    g1.close()
    settle()
    publish(broker.port)
    settle()
    before = len(g0.got)
    Member(broker.port, "g1", clean=True, subscribe=None).close()  # ends g1's session
    settle()
    publish(broker.port)
    settle()
    g0.close()
    broker.stop()
    return (
        f"e) with g1 offline g0 got {before}/100; after one clean-session connect as g1, "
        f"g0 got {len(g0.got) - before}/100 (g1's queued share is gone)"
    )


def restart_then_publish(shared: bool) -> str:
    broker = Broker(persistence=True)
    Member(broker.port, "g0", subscribe=SHARED if shared else "t/+/orders").close()
    settle()
    broker.stop()
    broker.start()
    acked = publish(broker.port)
    back = Member(broker.port, "g0", subscribe=None)  # reconnects, does not subscribe again
    settle()
    back.close()
    broker.stop()
    kind = "shared" if shared else "plain"
    return (
        f"f) {kind} subscription of an offline persistent session, broker restarted "
        f"(persistence true), {acked} published after the restart: {len(back.got)} "
        f"delivered on reconnect"
    )


def in_flight_window() -> str:
    broker = Broker()
    g0 = Member(broker.port, "g0", manual_ack=True)
    settle()
    publish(broker.port, 300)
    settle()
    held = len(g0.got)
    g0.close()
    broker.stop()
    return f"g) a member that never acknowledges, max_inflight_messages 100: it got {held} of 300"


def retire_by_unsubscribing() -> str:
    broker = Broker()
    g0, g1 = Member(broker.port, "g0"), Member(broker.port, "g1")
    g1.close()
    settle()
    publish(broker.port)
    settle()
    back = Member(broker.port, "g1", subscribe=None)
    unsubscribed = threading.Event()
    back.client.on_unsubscribe = lambda *_: unsubscribed.set()
    back.client.unsubscribe(SHARED)
    unsubscribed.wait(5)
    settle()
    queued, before = len(back.got), len(g0.got)
    publish(broker.port)
    settle()
    later = len(back.got) - queued
    back.close()
    g0.close()
    broker.stop()
    return (
        f"h) g1 offline with its share queued: back as g1 (persistent) it got {queued} and "
        f"unsubscribed; of 100 more, g0 got {len(g0.got) - before} and g1 {later}"
    )


EXPERIMENTS: dict[str, Callable[[], list[str]]] = {
    "a": lambda: [one_member_offline()],
    "b": lambda: [all_members_offline()],
    "c": lambda: [killed_with_unacknowledged(False), killed_with_unacknowledged(True)],
    "d": lambda: [
        broker_restart(p, s)
        for p, s in [(False, signal.SIGTERM), (True, signal.SIGTERM), (True, signal.SIGKILL)]
    ],  # fmt: skip
    "e": lambda: [retire_with_clean_session()],
    "f": lambda: [restart_then_publish(True), restart_then_publish(False)],
    "g": lambda: [in_flight_window()],
    "h": lambda: [retire_by_unsubscribing()],
}

if __name__ == "__main__":
    for name in sys.argv[1:] or list(EXPERIMENTS):
        for line in EXPERIMENTS[name]():
            print(line, flush=True)
