"""``eventlab grade LAB [--checks DIR] [--json]``: grade a lab folder against the broker.

The library side is :func:`eventlab.grading.grade` (docs/grading.md).
"""

from __future__ import annotations

import argparse
import json

from eventlab import grading
from eventlab.cli._common import Subcommands

__all__ = ["register"]


def _cmd_grade(args: argparse.Namespace) -> int:
    score = grading.grade(
        args.lab,
        checks=args.checks,
        seed=args.seed,
        timeout=args.timeout,
        out=args.out,
        quiet=True,
    )
    print(json.dumps(score.to_dict()) if args.json else score.table())
    return 0


def register(sub: Subcommands[argparse.ArgumentParser]) -> None:
    """Add ``eventlab grade LAB [--checks DIR] [--json]`` to the command."""
    parser = sub.add_parser(
        "grade", help="grade a lab folder against the broker; writes score.json and score.md"
    )
    parser.add_argument("lab", nargs="?", default=".", help="lab folder (default: here)")
    parser.add_argument("--checks", default=None, help="folder of extra (hidden) checks")
    parser.add_argument("--json", action="store_true", help="print the score as one JSON object")
    parser.add_argument("--seed", type=int, default=None, help="fault schedule seed")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per check")
    parser.add_argument("--out", default=None, help="folder for score.json and score.md")
    parser.set_defaults(handler=_cmd_grade)
