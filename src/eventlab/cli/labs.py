"""``eventlab labs build [--check]`` and ``eventlab labs pack``: learner copies of the labs.

The library side is :mod:`eventlab.labs`.
"""

from __future__ import annotations

import argparse

from eventlab import labs
from eventlab.cli._common import Subcommands

__all__ = ["register"]


def _cmd_pack(args: argparse.Namespace) -> int:
    members = labs.pack(root=args.root, dest=args.dest, spot_the_bug=args.spot_the_bug)
    extra = sum(m.startswith("spot-the-bug/") for m in members)
    note = f", {extra} spot-the-bug file(s)" if extra else ""
    print(f"wrote {args.dest}: {len(members)} file(s), no solutions/{note}")
    return 0


def _cmd_build(args: argparse.Namespace) -> int:
    if args.check:
        out_of_date = labs.stale(source=args.source, dest=args.dest)
        for path in out_of_date:
            print(f"out of date: {path}")
        return 1 if out_of_date else 0
    changed = labs.build(source=args.source, dest=args.dest, force=args.force)
    print(f"{len(changed)} file(s) written under {args.dest}/")
    return 0


def register(sub: Subcommands[argparse.ArgumentParser]) -> None:
    """Add ``eventlab labs build [--check]`` and ``eventlab labs pack`` to the command."""
    parser = sub.add_parser("labs", help="build learner copies of the labs from solutions/")
    inner = parser.add_subparsers(dest="labs_command", required=True, metavar="ACTION")
    build_cmd = inner.add_parser("build", help="regenerate labs/ from solutions/")
    build_cmd.add_argument("--source", default="solutions", help="solutions folder")
    build_cmd.add_argument("--dest", default="labs", help="learner labs folder")
    build_cmd.add_argument(
        "--check", action="store_true", help="only list out-of-date files; exit 1 if any"
    )
    build_cmd.add_argument(
        "--force",
        action="store_true",
        help="also replace files you changed in labs/ (each is kept as NAME.orig)",
    )
    build_cmd.set_defaults(handler=_cmd_build)
    pack_cmd = inner.add_parser("pack", help="the learners' bundle: the course without solutions/")
    pack_cmd.add_argument("--root", default=".", help="the checkout to pack")
    pack_cmd.add_argument("--dest", default="eventlab-learner.tar.gz", help="the .tar.gz to write")
    pack_cmd.add_argument(
        "--spot-the-bug",
        action="store_true",
        help="add each lab's partial (one-bug) solutions as spot-the-bug/",
    )
    pack_cmd.set_defaults(handler=_cmd_pack)
