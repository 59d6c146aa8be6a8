"""Evidence bundles as the tests handle them: `kym evidence verify` on one, and a tampering."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from gateway.cli import main


def kym_verify(tmp: Path, bundle: dict[str, Any], ca: bytes) -> tuple[int, str]:
    (tmp / "bundle.json").write_text(json.dumps(bundle))
    (tmp / "ca.pem").write_bytes(ca)
    args = ["evidence", "verify", str(tmp / "bundle.json"), "--ca", str(tmp / "ca.pem")]
    run = CliRunner().invoke(main, args)
    return run.exit_code, run.output


Bundle = dict[str, Any]


def entry(b: Bundle) -> None:
    b["audit"]["entries"][0]["content"]["data"]["amount"] += 1
