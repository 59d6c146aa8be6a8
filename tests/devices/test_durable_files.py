"""Files a device or the gateway cannot afford to lose are durable once written: the data is
fsynced before the rename, and the directory after it (else a power cut soon after can leave the
directory naming the old file, or none). Checked on the system calls themselves, with strace."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.services import unavailable

pytestmark = pytest.mark.filterwarnings("ignore")

SYSCALLS = "openat,rename,renameat,renameat2,fsync,fdatasync"


def traced(tmp_path: Path, code: str) -> list[str]:
    """The file system calls `code` makes, as strace prints them."""
    strace = shutil.which("strace")
    if strace is None:
        unavailable("strace")
    assert strace is not None
    out = tmp_path / "strace.txt"
    subprocess.run(
        [
            strace,
            "-f",
            "-qq",
            "-e",
            f"trace={SYSCALLS}",
            "-o",
            str(out),
            sys.executable,
            "-c",
            code,
        ],
        check=True,
        cwd=Path(__file__).parents[2],
    )
    return out.read_text().splitlines()


def durable_renames(calls: list[str], target: Path) -> list[tuple[bool, bool]]:
    """For each rename onto `target`: (was the renamed file fsynced before it, was `target`'s
    directory opened and fsynced after it)."""
    found = []
    for i, call in enumerate(calls):
        if not re.search(rf'rename\w*\(.*"{re.escape(str(target))}"', call):
            continue
        before = calls[:i]
        fsynced_file = any(re.search(r"\bfsync\(\d+\)", c) for c in before[-4:])
        after = calls[i + 1 :]
        dir_fd = next(
            (
                m.group(1)
                for c in after
                if (
                    m := re.search(
                        rf'openat\(.*"{re.escape(str(target.parent))}", .*O_DIRECTORY.*= (\d+)', c
                    )
                )
            ),
            None,
        )
        synced_dir = dir_fd is not None and any(
            re.search(rf"\bfsync\({dir_fd}\)", c) for c in after
        )
        found.append((fsynced_file, synced_dir))
    return found


def test_a_new_order_journal_is_durable_before_its_first_order_is_sent(tmp_path: Path) -> None:
    path = tmp_path / "device" / "journal.jsonl"
    code = (
        "from pathlib import Path; from devices.sdk.journal import Journal; "
        f"j = Journal(Path({str(path)!r})); j.record_order('o-1', 'a.b.c'); j.close()"
    )
    calls = traced(tmp_path, code)
    assert durable_renames(calls, path) == [(True, True)], calls[-30:]


def test_the_gateway_crl_is_durable_once_written(tmp_path: Path) -> None:
    data = tmp_path / "data"
    code = (
        "from pathlib import Path; from devices import keystore; "
        "from devices.crl import build_crl; from gateway.context import utcnow; "
        f"pki = keystore.load_or_create_pki(Path({str(data)!r}), 'kym.test', utcnow()); "
        "keystore.write_crl(pki, build_crl(pki.device_issuing, [], crl_number=1, now=utcnow()))"
    )
    calls = traced(tmp_path, code)
    renames = durable_renames(calls, data / "ca" / "device.crl")
    assert renames and all(r == (True, True) for r in renames), calls[-30:]
