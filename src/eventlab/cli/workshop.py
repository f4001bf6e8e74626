"""``eventlab workshop join|leave|status|forget|reset|add``: a room of learners, one broker.

The library side is :mod:`eventlab.workshop` (docs/instructor.md). A command
writes to stdout; a URL is printed only through :func:`eventlab.broker.redact`
(``add`` prints the learner's own URL, on purpose, alone on stdout).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from eventlab import _env, broker, workshop
from eventlab.cli._common import Subcommands

__all__ = ["register"]


def _say(line: str) -> None:
    # A command writes to stdout; never pass a URL here without broker.redact.
    sys.stdout.write(line + "\n")


def _instructor_url(args: argparse.Namespace) -> str:
    """The room an instructor command reads: --room, the env, the saved room, REDIS_URL."""
    url = (
        getattr(args, "room", None)
        or workshop.room_url(state=args.state)
        or _env.get(_env.REDIS_URL)
    )
    if not url:
        raise workshop.WorkshopError(
            "which room? this command reads the room broker, and no room URL is set "
            "(it will not start a local broker for this)",
            fix="pass --room redis://:PASSWORD@HOST:PORT/0, or export "
            f"{workshop.WORKSHOP_URL_ENV}=redis://:PASSWORD@HOST:PORT/0",
        )
    return url


def _cmd_join(args: argparse.Namespace) -> int:
    done = workshop.join_room(args.name, room=args.room, state=args.state)
    name, where, path = done.name, done.where, done.path
    room = args.room or _env.get(_env.WORKSHOP_URL)
    _say(f"joined as {name!r}; progress goes to {where}")
    if args.room:
        _say(f"saved name and room in {path.parent} (room file readable by you only)")
    else:
        _say(f"saved in {path}")
    _say(f"notebooks and commands in this checkout now use keys '{name}:*' (running kernels too)")
    if not room and not _env.get(_env.REDIS_URL):
        _say("no room URL: the instructor will not see your progress; if you were given one, "
             f"run: eventlab workshop join {name} --room URL")  # fmt: skip
    shell = _env.get(_env.NAMESPACE)
    if shell and shell != name:
        _say(f"note: EVENTLAB_NAMESPACE={shell} is set here and wins; unset it to use {name!r}")
    return 0


def _cmd_leave(args: argparse.Namespace) -> int:
    _say("left the workshop" if workshop.leave(state=args.state) else "no workshop name was saved")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    url = _instructor_url(args)
    rounds = 0
    while True:
        with workshop.room_client(url, admin=True) as client:
            rows = workshop.status(client)
        if args.json:
            payload = {"broker": broker.redact(url), "learners": [r.as_dict() for r in rows]}
            _say(json.dumps(payload))
        else:
            if args.watch is not None and sys.stdout.isatty():
                sys.stdout.write("\x1b[H\x1b[2J")  # clear the screen between refreshes
            _say(workshop.format_status(rows, where=broker.redact(url)))
        rounds += 1
        if args.watch is None or (args.rounds and rounds >= args.rounds):
            return 0
        sys.stdout.flush()
        time.sleep(args.watch)


def _cmd_forget(args: argparse.Namespace) -> int:
    url = _instructor_url(args)
    with workshop.room_client(url, admin=True) as client:
        count = workshop.forget(client, args.name)
    where = broker.redact(url)
    _say(
        f"forgot {args.name!r}: {count} progress event(s) and their ACL user (if any) removed "
        f"from {where}; their keys stay (reset --learner NAME deletes them)"
    )
    return 0


def _cmd_reset(args: argparse.Namespace) -> int:
    url = _instructor_url(args)
    with workshop.room_client(url, admin=True) as client:
        report = workshop.reset(
            client, learner=args.learner, everyone=args.all, progress=args.progress
        )
    who = args.learner or f"all {len(report.learners)} learner(s)"
    text = f"reset {who} on {broker.redact(url)}: {report.keys} key(s) deleted"
    if args.progress:
        text += f", {report.progress} progress stream(s) deleted"
    _say(text)
    if report.keys == 0:
        _say("no learner keys live on this broker: in setup A each learner's keys are on their "
             "own broker, theirs to reset (re-run a lesson: its setup cell resets its keys; or "
             "eventlab down, delete .eventlab/data, eventlab up)")  # fmt: skip
    return 0


def _cmd_add(args: argparse.Namespace) -> int:
    url = _instructor_url(args)
    with workshop.room_client(url, admin=True) as client:
        password = workshop.add(client, args.name)
    # The URL alone on stdout, so a script can capture it: SEAT=$(eventlab workshop add NAME)
    sys.stderr.write(
        f"added ACL user {args.name!r} on {broker.redact(url)}; give the learner this URL "
        "privately (it holds their password):\n"
    )
    _say(workshop.learner_url(url, args.name, password))
    return 0


def register(sub: Subcommands[argparse.ArgumentParser]) -> None:
    """Add ``eventlab workshop join|leave|status|forget|reset|add`` to the command."""
    parser = sub.add_parser("workshop", help="join a room broker; the instructor's view")
    actions = parser.add_subparsers(dest="workshop_command", required=True, metavar="ACTION")
    room_help = (
        f"room broker URL (default: ${workshop.WORKSHOP_URL_ENV}, the joined room, $REDIS_URL)"
    )

    join_ = actions.add_parser("join", help="save NAME (and the room URL) for this checkout")
    join_.add_argument("name", help="your learner name: letters, digits, _ . -")
    join_.add_argument("--room", default=None, help="the room URL the instructor gave you")
    join_.set_defaults(handler=_cmd_join)

    leave_ = actions.add_parser("leave", help="forget the saved name and room (back to 'lab')")
    leave_.set_defaults(handler=_cmd_leave)

    status_ = actions.add_parser("status", help="per learner: lessons passed/started, labs")
    status_.add_argument("--room", default=None, help=room_help)
    status_.add_argument("--json", action="store_true", help="print as JSON")
    status_.add_argument(
        "--watch", type=float, nargs="?", const=5.0, default=None, metavar="SECONDS",
        help="refresh every SECONDS (default 5) until Ctrl-C",
    )  # fmt: skip
    status_.add_argument("--rounds", type=int, default=0, help=argparse.SUPPRESS)
    status_.set_defaults(handler=_cmd_status)

    forget_ = actions.add_parser("forget", help="remove one learner from the room's progress")
    forget_.add_argument("name")
    forget_.add_argument("--room", default=None, help=room_help)
    forget_.set_defaults(handler=_cmd_forget)

    reset_ = actions.add_parser("reset", help="delete one learner's keys, or everyone's")
    who = reset_.add_mutually_exclusive_group(required=True)
    who.add_argument("--learner", default=None, help="only this learner")
    who.add_argument("--all", action="store_true", help="every learner in the progress")
    reset_.add_argument(
        "--progress", action="store_true", help="also delete their progress (a new cohort)"
    )
    reset_.add_argument("--room", default=None, help=room_help)
    reset_.set_defaults(handler=_cmd_reset)

    add_ = actions.add_parser("add", help="create a learner's ACL user; prints their URL")
    add_.add_argument("name")
    add_.add_argument("--room", default=None, help=room_help)
    add_.set_defaults(handler=_cmd_add)
