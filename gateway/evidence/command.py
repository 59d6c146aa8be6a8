"""`kym evidence verify FILE --ca CA_BUNDLE`: check an evidence bundle offline."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from gateway.evidence.verify import verify_bundle

FILE = click.Path(exists=True, dir_okay=False, path_type=Path)


@click.group(short_help="Check evidence bundles offline.")
def evidence() -> None:
    """Check evidence bundles (GET /v1/payments/{id}/evidence) offline."""


@evidence.command("verify", short_help="Check a bundle against a CA bundle (GET /v1/ca).")
@click.argument("bundle", metavar="FILE", type=FILE)
@click.option("--ca", "ca_bundle", required=True, type=FILE, help="The CA bundle of GET /v1/ca.")
def verify(bundle: Path, ca_bundle: Path) -> None:
    """Check a bundle against a CA bundle: exit 0 when every check holds, 1 naming each that
    fails, 2 when the file is not JSON. That the bundle holds every entry and result about the
    payment cannot be checked offline. It reads no KYM_* variable and no data dir: only the
    two files.

    \b
    Example:
      curl -H "$OWNER_KEY" $API/v1/payments/$PAYMENT/evidence > bundle.json
      curl $API/v1/ca > ca.pem
      kym evidence verify bundle.json --ca ca.pem
    """
    try:
        value = json.loads(bundle.read_text())
    except (ValueError, UnicodeDecodeError) as exc:
        click.echo(f"kym: {bundle} is not JSON ({exc})", err=True)
        sys.exit(2)
    problems = verify_bundle(value, ca_bundle.read_bytes())
    if problems:
        for problem in problems:
            click.echo(f"FAILED {problem}", err=True)
        sys.exit(1)
    entries = len(value["audit"]["entries"])
    results = len(value["results"])
    click.echo(
        f"evidence for {value['payment_id']} verifies: order, certificates, consent, "
        f"{results} results, {entries} audit entries with their inclusion proofs"
    )
