"""The README's walkthrough, run as it is written: from an openssl key to a paid order and
its signed result, against a real `kym serve` on each broker."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from cryptography import x509

from devices.sdk.trust import ResultVerifier
from tests.support.cli import Served, clean_env

README = Path(__file__).resolve().parents[2] / "README.md"


def walkthrough(served: Served) -> str:
    """The README's block, with the ports of this `kym serve` for 8080 and 8883."""
    text = README.read_text()
    block = re.search(
        r"<!-- walkthrough:.*?-->\n```sh\n(.*?)```\n<!-- walkthrough end -->", text, re.DOTALL
    )
    assert block, "the README has lost its walkthrough block"
    script = block.group(1)
    assert "127.0.0.1:8080" in script and "8883" in script
    script = script.replace("127.0.0.1:8080", f"127.0.0.1:{served.http_port}")
    return re.sub(r"\b8883\b", str(served.mqtt_port), script)


def test_the_readme_walkthrough_pays_and_shows_the_signed_result(served: Served) -> None:
    completed = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", walkthrough(served)],
        cwd=served.home,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    device_id = json.loads((served.home / "car" / "device.json").read_text())["id"]
    # Step 4: kym device pay, its verified result.
    assert re.search(
        r"^approved payment pay_\w+ \(signature verified with car/gateway.crt\)$",
        completed.stdout,
        re.MULTILINE,
    ), output
    assert f'"device_id": "{device_id}"' in completed.stdout
    assert '"amount": 450' in completed.stdout
    # Step 5: mosquitto_rr on one connection; the result it printed is signed by the gateway.
    raw = (served.home / "result.jws").read_text().strip()
    signer = x509.load_pem_x509_certificate((served.home / "car" / "gateway.crt").read_bytes())
    result = ResultVerifier(signer, device_id).open(raw.encode())
    assert (result["status"], result["amount"], result["reason"]) == ("approved", 120, None)
    shown = json.loads("{" + completed.stdout.rsplit("\n{", 1)[1])  # the last step's output
    assert shown == result
