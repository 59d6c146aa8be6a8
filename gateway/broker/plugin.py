"""`kym_ratelimit.so`: the per-device rate limit inside Mosquitto, built from the C source shipped
in this package (`kym_ratelimit.c`, which says why the limit belongs in the broker).

Mosquitto 2.0.11 has no per-client publish rate of its own, and a plugin is a shared object, so
it is compiled here with the system's C compiler (`cc`, or `$CC`) the first time a configuration
is written, into the configuration's directory beside `mosquitto.conf`, and again only when the
source changes. Where no compiler is installed the broker runs without it: the gateway's own limit
still holds for every device (it refuses a flood cheaply), but a flood then waits in Mosquitto's
queue for the gateway ahead of other devices' orders (see benchmarks/README.md, "A flood").
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
from importlib import resources
from pathlib import Path

log = logging.getLogger("kym.mosquitto")
NAME = "kym_ratelimit"
BROKER_FACTOR = 2  # the broker's limit is this many times the gateway's: it drops only what
# the gateway would refuse anyway, and the gateway still sees enough of a flood to answer it


def source() -> bytes:
    """The plugin's C source, as shipped in the package."""
    return resources.files("gateway.broker").joinpath(f"{NAME}.c").read_bytes()


def find_compiler() -> str | None:
    """The C compiler to build the plugin with: `$CC`, else cc, gcc or clang on PATH."""
    candidates = [os.environ.get("CC"), "cc", "gcc", "clang"]
    return next((found for c in candidates if c and (found := shutil.which(c))), None)


def build(outdir: Path) -> Path | None:
    """OUTDIR/kym_ratelimit.so, compiled now unless already built from this source; None (with a
    warning) when there is no compiler or the build fails."""
    text = source()
    digest = hashlib.sha256(text).hexdigest()[:16]
    target, stamp = outdir / f"{NAME}.so", outdir / f"{NAME}.sha256"
    if target.exists() and stamp.exists() and stamp.read_text() == digest:
        return target
    compiler = find_compiler()
    if compiler is None:
        log.warning(
            "no C compiler (cc) found: Mosquitto runs without the kym_ratelimit plugin, so a "
            "device's flood waits in the broker ahead of other devices' orders; install gcc"
        )
        return None
    outdir.mkdir(parents=True, exist_ok=True)
    src = outdir / f"{NAME}.c"
    src.write_bytes(text)
    partial = outdir / f"{NAME}.so.partial"
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


def config_lines(plugin: Path | None, rate_per_s: float, burst: int) -> list[str]:
    """The mosquitto.conf lines that load the plugin with the broker's limits for a gateway's
    `--device-rate` and `--device-burst`; none without a plugin."""
    if plugin is None:
        return []
    rate, depth = broker_limits(rate_per_s, burst)
    return [f"plugin {plugin}", f"plugin_opt_rate {rate:g}", f"plugin_opt_burst {depth}"]
