"""A small file system of a test's own, to fill: a tmpfs mounted as root (as the suite runs
here), and a file of zeros written until it is full."""

from __future__ import annotations

import errno
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.services import unavailable


@contextmanager
def tmpfs(mount: Path, size_mb: int) -> Iterator[Path]:
    """The empty directory `mount` as a tmpfs of `size_mb` MB, unmounted afterwards whatever
    happens (the test fails in CI, and is skipped elsewhere, where it cannot be mounted)."""
    command = ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m", "tmpfs", str(mount)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        unavailable(f"a tmpfs of the test's own ({done.stderr.strip()})")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=True)


def fill(directory: Path) -> Path:
    """A file of zeros written until the file system holding `directory` is full."""
    path = directory / "filler"
    with path.open("wb", buffering=0) as out:
        try:
            while out.write(bytes(1 << 16)):
                pass
        except OSError as exc:
            assert exc.errno == errno.ENOSPC, exc
    return path
