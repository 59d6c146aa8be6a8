"""The `kym` command line as the tests run it: a clean environment, a run, a served gateway."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

BIN = Path(sys.executable).parent  # where `kym` is installed beside this interpreter


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a fresh shell: no KYM_* variable from ours, `kym` on the PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("KYM_")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    return {**env, **extra}


def kym(
    *args: str, cwd: Path | None = None, timeout_s: float = 60, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "kym"), *args],
        cwd=cwd,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


@dataclass(frozen=True)
class Served:
    """A `kym serve` started in `home` with `--data-dir ./kym-data`."""

    home: Path
    http_port: int
    mqtt_port: int

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"
