"""The README's ways of checking a bundle without `kym`: its openssl commands and its script,
run as they are written there, on a real bundle and on a tampered one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.evidence.scenes import SCENES
from tests.support.evidence import entry
from tests.support.world import World

README = Path(__file__).parents[2] / "README.md"


def block(marker: str) -> str:
    """The fenced block that follows `<!-- marker: ... -->` in the README."""
    text = README.read_text()
    start = text.index(f"<!-- {marker}:")
    body = text[text.index("```", start) :]
    body = body[body.index("\n") + 1 :]
    return body[: body.index("```")]


@pytest.fixture
def files(world: World, tmp_path: Path) -> Path:
    scene = SCENES["approval"](world)
    (tmp_path / "bundle.json").write_text(json.dumps(scene.bundle()))
    (tmp_path / "ca.pem").write_bytes(scene.ca())
    return tmp_path


def test_openssl_commands_check_the_certificates(files: Path) -> None:
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", block("evidence-openssl")],
        cwd=files, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert run.stdout.count(": OK") == 2, run.stdout
    assert "/gateway/signer" in run.stdout


def test_script_checks_signatures_and_proofs(files: Path) -> None:
    (files / "check_bundle.py").write_text(block("evidence-script"))
    script = [sys.executable, "check_bundle.py", "bundle.json"]
    run = subprocess.run(script, cwd=files, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode == 0, run.stderr
    assert "signatures and proofs hold" in run.stdout
    bundle = json.loads((files / "bundle.json").read_text())
    entry(bundle)
    (files / "bundle.json").write_text(json.dumps(bundle))
    run = subprocess.run(script, cwd=files, capture_output=True, text=True, timeout=60, check=False)
    assert run.returncode != 0 and "AssertionError" in run.stderr
