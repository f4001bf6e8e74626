"""``eventlab dlq STREAM [--group G] [--redrive [--id ID ...]]``: list or redrive dead letters.

The library side is :func:`eventlab.consumer.dead_letters` and :func:`eventlab.consumer.redrive`
(lesson 04).
"""

from __future__ import annotations

import argparse

from eventlab.cli._common import Subcommands

__all__ = ["register"]


def register(sub: Subcommands[argparse.ArgumentParser]) -> None:
    """Add ``eventlab dlq STREAM [--group G] [--redrive [--id ID ...]]`` to the command."""
    dlq = sub.add_parser("dlq", help="list a stream's dead letters, or redrive them")
    dlq.add_argument("stream", help="a stream name ('orders') or key ('{lab:orders}')")
    dlq.add_argument("--group", default=None, help="only dead letters this group gave up on")
    dlq.add_argument("--redrive", action="store_true", help="move them back to the stream")
    dlq.add_argument("--id", action="append", default=None, help="only this dead-letter id")
    dlq.set_defaults(handler=_cmd_dlq)


def _cmd_dlq(args: argparse.Namespace) -> int:
    from eventlab.broker import connect  # noqa: PLC0415 - only when the command runs
    from eventlab.consumer import dead_letters, redrive  # noqa: PLC0415
    from eventlab.streams import stream_key  # noqa: PLC0415

    stream = args.stream if ":" in args.stream else stream_key(args.stream)
    client = connect()
    try:
        if args.redrive:
            moved = redrive(client, stream, ids=args.id, group=args.group)
            print(f"redrove {len(moved)} dead letters to {stream}")
            return 0
        letters = [
            d
            for d in dead_letters(client, stream, group=args.group)
            if args.id is None or d.entry_id in args.id
        ]
        for d in letters:
            print(f"{d.entry_id}  {d.group}  attempts={d.attempts}  {d.error}: {d.reason}")
        print(f"{len(letters)} dead letters in {stream}:dlq")
        return 0
    finally:
        client.close()
