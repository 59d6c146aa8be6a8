"""KYM's Mosquitto plugins, built from the C sources shipped in this package:

- `kym_ratelimit.so`, the per-device rate limit inside Mosquitto (`kym_ratelimit.c` says why the
  limit belongs in the broker). Without it, the gateway's own limit still holds for every device
  (it refuses a flood cheaply), but a flood then waits in Mosquitto's queue for the gateway ahead
  of other devices' orders (see benchmarks/README.md, "A flood").
- `kym_access.so`, the access rules as patterns on the certificate's identity, for the managed
  Mosquitto (`kym_access.c` says why): no entry per device, so registering the millionth device
  costs the broker nothing. Without it, the managed Mosquitto uses the dynamic-security plugin,
  as `kym mosquitto-config` always does (the contract names it there).

A plugin is a shared object, so each is compiled here with the system's C compiler (`cc`, or
`$CC`) the first time a configuration is written, into the configuration's directory beside
`mosquitto.conf`, and again only when its source changes.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import threading
from importlib import resources
from pathlib import Path

from devices import keystore
from gateway.broker import dynsec

log = logging.getLogger("kym.mosquitto")
RATE_LIMIT, ACCESS = "kym_ratelimit", "kym_access"
KICK_TOPIC = "$CONTROL/kym/v1/kick"  # kym_access: a device id as payload ends its sessions
BROKER_FACTOR = 2  # the broker's limit is this many times the gateway's: it drops only what
# the gateway would refuse anyway, and the gateway still sees enough of a flood to answer it
# A device whose dropped orders (less the rate since) exceed this many of the broker's bursts is
# disconnected: a flood then costs the broker about six bursts, however long it is.
DISCONNECT_AFTER_BURSTS = 5


def source(name: str) -> bytes:
    """A plugin's C source, as shipped in the package."""
    return resources.files("gateway.broker").joinpath(f"{name}.c").read_bytes()


def find_compiler() -> str | None:
    """The C compiler to build the plugin with: `$CC`, else cc, gcc or clang on PATH."""
    candidates = [os.environ.get("CC"), "cc", "gcc", "clang"]
    return next((found for c in candidates if c and (found := shutil.which(c))), None)


def build(outdir: Path, name: str = RATE_LIMIT) -> Path | None:
    """OUTDIR/<name>.so, compiled now unless already built from this source; None (with a
    warning) when there is no compiler or the build fails."""
    text = source(name)
    digest = hashlib.sha256(text).hexdigest()[:16]
    target, stamp = outdir / f"{name}.so", outdir / f"{name}.sha256"
    if target.exists() and stamp.exists() and stamp.read_text() == digest:
        return target
    compiler = find_compiler()
    if compiler is None:
        log.warning(
            "no C compiler (cc) found: Mosquitto runs without the %s plugin (see "
            "docs/mosquitto.md); install gcc",
            name,
        )
        return None
    outdir.mkdir(parents=True, exist_ok=True)
    src = outdir / f"{name}.c"
    src.write_bytes(text)
    partial = outdir / f"{name}.so.partial"
    command = [compiler, "-shared", "-fPIC", "-O2", "-o", str(partial), str(src)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        log.warning("could not build %s (%s): %s", target, " ".join(command), done.stderr.strip())
        return None
    partial.replace(target)  # atomic: a running broker keeps the file it mapped
    stamp.write_text(digest)
    return target


def broker_limits(rate_per_s: float, burst: int) -> tuple[float, int]:
    """A broker's per-device limits for a gateway that allows `rate_per_s` and `burst`."""
    return rate_per_s * BROKER_FACTOR, burst * BROKER_FACTOR


def disconnect_after(broker_burst: int) -> int:
    """Orders beyond the broker's limit (less its rate since) that disconnect a device."""
    return broker_burst * DISCONNECT_AFTER_BURSTS


def config_lines(plugin: Path | None, rate_per_s: float, burst: int) -> list[str]:
    """The mosquitto.conf lines that load the plugin with the broker's limits for a gateway's
    `--device-rate` and `--device-burst`; none without a plugin."""
    if plugin is None:
        return []
    rate, depth = broker_limits(rate_per_s, burst)
    return [
        f"plugin {plugin}",
        f"plugin_opt_rate {rate:g}",
        f"plugin_opt_burst {depth}",
        f"plugin_opt_disconnect_after {disconnect_after(depth)}",
    ]


def access_lines(plugin: Path, crlfile: Path) -> list[str]:
    """The mosquitto.conf lines that give the broker KYM's access rules by `kym_access`, which
    also refuses everything to a certificate in `crlfile` (see kym_access.c)."""
    return [f"plugin {plugin}", f"plugin_opt_crlfile {crlfile.resolve()}"]


def kick(
    pki: keystore.Pki, host: str, port: int, n: int, device_id: str, timeout_s: float = 5.0
) -> None:
    """End `device_id`'s live sessions on a broker running `kym_access`, as admin identity `n`
    (a short connection: the identity is the client id, so a standing one would be taken over
    by the next). Raises DynsecError when the broker does not acknowledge it."""
    connected = threading.Event()
    client = dynsec.admin_client(pki, n)
    client.on_connect = lambda *_: connected.set()
    try:
        client.connect(host, port, keepalive=10)
        client.loop_start()
        if not connected.wait(timeout_s):
            raise dynsec.DynsecError(f"no CONNACK from the broker to end {device_id}'s session")
        sent = client.publish(KICK_TOPIC, device_id.encode(), qos=1)
        sent.wait_for_publish(timeout_s)  # acknowledged once the plugin has kicked
        if not sent.is_published():
            raise dynsec.DynsecError(f"no PUBACK from the broker for ending {device_id}'s session")
    except OSError as exc:
        raise dynsec.DynsecError(f"could not end {device_id}'s session: {exc}") from exc
    finally:
        client.disconnect()
        client.loop_stop()
        client._reset_sockets()  # paho keeps them until garbage collection otherwise
