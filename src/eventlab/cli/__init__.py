"""The ``eventlab`` command: start and inspect the broker, check the setup, open the course.

Every error is one line naming the fix, and exits with status 2.

One module per command group, each with a ``register(sub)`` that adds its
sub-commands: :mod:`~eventlab.cli.core` (``up``, ``down``, ``status``,
``doctor``, ``lab``), :mod:`~eventlab.cli.dlq`, :mod:`~eventlab.cli.faults`
(with ``faults scenario``), :mod:`~eventlab.cli.workshop`,
:mod:`~eventlab.cli.labs`, :mod:`~eventlab.cli.grading` (``grade``),
:mod:`~eventlab.cli.shop` and :mod:`~eventlab.cli.contracts`. Only this
package prints and imports :mod:`argparse`; the library modules return values.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from eventlab._errors import EventlabError
from eventlab.cli import core
from eventlab.cli._common import Handler, Subcommands

__all__ = ["main"]

_CORE = core.COMMANDS


def _command(argv: Sequence[str] | None) -> str | None:
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--state")
    pre.add_argument("command", nargs="?")
    known, _ = pre.parse_known_args(argv)
    return known.command  # type: ignore[no-any-return]


def _wants_core_only(argv: Sequence[str] | None) -> bool:
    """Whether the command is a core one, so the heavier modules need not be imported.

    Importing every module (jsonschema, faststream, pandas…) costs seconds; `eventlab up`
    in a Makefile or a lesson should not pay for `eventlab contracts`.
    """
    return _command(argv) in _CORE


def _parser(*, core_only: bool = False, only: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="eventlab",
        description="Course and lab kit on eventual consistency over Redis Streams.",
    )
    parser.add_argument(
        "--state",
        default=None,
        help="state folder of the managed broker (default: .eventlab/ at the project root)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    core.register(sub)

    if only == "workshop":
        # A room of learners runs `eventlab workshop …` often: 0.5 s instead of 2+ s.
        from eventlab.cli import workshop  # noqa: PLC0415 - only when the command runs

        workshop.register(sub)
    elif not core_only:
        for register in _extensions():
            register(sub)
    return parser


def _extensions() -> list[Callable[[Subcommands[argparse.ArgumentParser]], None]]:
    """Command groups beyond the core ones (each imports its library module when registered)."""
    from eventlab.cli import (  # noqa: PLC0415 - only when the command runs
        contracts,
        dlq,
        faults,
        grading,
        labs,
        shop,
        workshop,
    )

    return [
        dlq.register,
        workshop.register,
        faults.register,
        labs.register,
        grading.register,
        shop.register,
        contracts.register,
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``eventlab`` command; return its exit status."""
    command = _command(argv)
    parser = _parser(core_only=command in _CORE, only=command if command == "workshop" else None)
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except EventlabError as exc:
        print(f"eventlab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
