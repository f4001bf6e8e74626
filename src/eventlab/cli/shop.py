"""``eventlab shop up|down``: run the demo shop's services as processes.

The library side is :mod:`eventlab.shop.app` (lesson 06).
"""

from __future__ import annotations

import argparse

from eventlab.cli._common import Subcommands

__all__ = ["register"]


def _cmd_up(args: argparse.Namespace) -> int:
    from eventlab.shop import app  # noqa: PLC0415 - faststream loads only when the command runs

    options = [f"timeout={args.timeout}"] if args.timeout else []
    procs = app.up(
        state=args.state, services=args.services or app.DEFAULT_SERVICES, options=options
    )
    for proc in procs:
        print(f"{proc.name}: pid {proc.pid}, log {proc.log_path}")
    print("shop up: place orders with eventlab.shop.place_order; stop with `eventlab shop down`")
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    from eventlab.shop import app  # noqa: PLC0415

    stopped = app.down(state=args.state)
    print(f"stopped: {', '.join(stopped)}" if stopped else "no shop services were running")
    return 0


def register(sub: Subcommands[argparse.ArgumentParser]) -> None:
    """Add ``eventlab shop up|down`` to the command."""
    from eventlab.shop.app import DEFAULT_SERVICES  # noqa: PLC0415

    shop = sub.add_parser("shop", help="run the demo shop's services as processes")
    inner = shop.add_subparsers(dest="shop_command", required=True, metavar="ACTION")
    start = inner.add_parser("up", help="start the broker and one process per service")
    start.add_argument(
        "services", nargs="*", help=f"which (default: {', '.join(DEFAULT_SERVICES)})"
    )
    start.add_argument("--timeout", type=float, default=None, help="seconds per saga step")
    start.set_defaults(handler=_cmd_up)
    stop = inner.add_parser("down", help="stop the service processes")
    stop.set_defaults(handler=_cmd_down)
