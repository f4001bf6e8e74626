"""``eventlab contracts gen|check``: the shop's AsyncAPI document, checked against the registry.

The library side is :mod:`eventlab.shop.contracts` (lesson 08).
"""

from __future__ import annotations

import argparse
import contextlib
import json
from pathlib import Path

from eventlab import broker as broker_mod
from eventlab import schema
from eventlab.cli._common import Subcommands
from eventlab.shop import contracts

__all__ = ["register"]


def _cmd_gen(args: argparse.Namespace) -> int:
    text = json.dumps(contracts.document(), indent=2, sort_keys=True)
    if args.out:
        Path(args.out).write_text(text + "\n")
        print(f"wrote {args.out}")
    else:
        print(text)
    return 0


def _cmd_check(args: argparse.Namespace) -> int:
    handle = broker_mod.up(state=args.state)
    doc = json.loads(Path(args.doc).read_text()) if args.doc else contracts.document(url=handle.url)
    client = handle.client()
    try:
        registry = schema.Registry(client)
        if args.register:
            for _, event_type, payload in contracts.payloads(doc):
                with contextlib.suppress(schema.SchemaError):  # reported below as a finding
                    registry.register(event_type, payload)
        findings = contracts.check(doc, registry)
    finally:
        client.close()
    bad = [f for f in findings if not f.ok]
    for finding in findings:
        if args.verbose or not finding.ok:
            mark = "[OK]  " if finding.ok else "[FAIL]"
            detail = f"v{finding.version}" if finding.ok else finding.problem
            print(f"{mark} {finding.channel}: {detail}")
    print(
        f"contracts: {len(findings) - len(bad)} of {len(findings)} messages agree with the registry"
    )
    return 1 if bad else 0


def register(sub: Subcommands[argparse.ArgumentParser]) -> None:
    """Add ``eventlab contracts gen|check`` to the command."""
    parser = sub.add_parser(
        "contracts", help="AsyncAPI document of the shop; check it against the registry"
    )
    inner = parser.add_subparsers(dest="contracts_command", required=True, metavar="ACTION")
    gen = inner.add_parser("gen", help="print (or write) the AsyncAPI 3.0 document")
    gen.add_argument("--out", default=None, help="write to this file")
    gen.set_defaults(handler=_cmd_gen)
    chk = inner.add_parser("check", help="exit 1 if the document and the registry disagree")
    chk.add_argument("--doc", default=None, help="an AsyncAPI JSON file (default: generate it)")
    chk.add_argument(
        "--register", action="store_true", help="register compatible new schemas first"
    )
    chk.add_argument("-v", "--verbose", action="store_true", help="list agreeing messages too")
    chk.set_defaults(handler=_cmd_check)
