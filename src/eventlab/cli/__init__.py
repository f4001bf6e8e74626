"""The ``eventlab`` command: start and inspect the broker, check the setup, open the course.

Every error is one line naming the fix, and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Sequence

from eventlab import broker, doctor, streams
from eventlab._errors import EventlabError

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], int]


def _cmd_up(args: argparse.Namespace) -> int:
    handle = broker.up(state=args.state, port=args.port, persistence=args.persistence)
    info = {
        "url": broker.redact(handle.url),
        "version": handle.version,
        "managed": handle.managed,
        "pid": handle.pid,
        "persistence": handle.persistence,
        "state": str(handle.state) if handle.state else None,
    }
    if args.json:
        print(json.dumps(info))
    else:
        kind = f"managed, pid {handle.pid}" if handle.managed else "from REDIS_URL"
        print(f"broker up: {info['url']} (version {handle.version}, {kind})")
        if handle.state is not None:
            print(f"state folder {handle.state}")
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    if os.environ.get("REDIS_URL"):
        print("REDIS_URL is set: that broker is not eventlab's to stop; nothing done")
        return 0
    stopped = broker.down(state=args.state)
    print("broker stopped" if stopped else "no managed broker was running")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    handle = broker.current(state=args.state)
    folder = None if os.environ.get("REDIS_URL") else broker.state_dir(args.state)
    if handle is None:
        raise EventlabError(
            f"no broker is running (state folder {folder})", fix="start one with `eventlab up`"
        )
    kind = f"managed, pid {handle.pid}" if handle.managed else "REDIS_URL"
    where = f"state folder {folder}" if folder is not None else "REDIS_URL is set"
    progress = handle.loading()
    if progress is not None:  # alive but answers LOADING: say so, never call it dead
        if args.json:
            info = {"url": broker.redact(handle.url), "loading": True, "progress": progress}
            print(json.dumps({**info, "state": str(folder) if folder else None}))
        else:
            print(
                f"broker {broker.redact(handle.url)} ({kind}): loading its data, {progress:.0f} %"
            )
            print(where)
        return 0
    client = handle.client()
    try:
        frame = streams.groups_frame(client)
        keys = sorted(client.scan_iter(match=f"{streams.namespace()}:*", _type="stream"))
        if args.json:
            print(
                json.dumps(
                    {
                        "url": broker.redact(handle.url),
                        "version": handle.version,
                        "managed": handle.managed,
                        "loading": False,
                        "state": str(folder) if folder else None,
                        "namespace": streams.namespace(),
                        "streams": {k: int(client.xlen(k)) for k in keys},
                        "groups": json.loads(frame.to_json(orient="records")),
                    }
                )
            )
            return 0
        print(f"broker {broker.redact(handle.url)} version {handle.version} ({kind})")
        print(where)
        print(f"namespace {streams.namespace()}: {len(keys)} stream(s)")
        for key in keys:
            print(f"  {key}  length {client.xlen(key)}")
        if frame.empty:
            print("no consumer groups")
        else:
            print(frame.to_string(index=False))
    finally:
        client.close()
    return 0


def _cmd_doctor(args: argparse.Namespace) -> int:
    results = doctor.run(state=args.state)
    for check in results:
        print(check.line())
    return 0 if all(check.ok for check in results) else 1


def _cmd_lab(args: argparse.Namespace) -> int:
    from eventlab import _jupyter  # noqa: PLC0415 - only this command needs it

    root = _jupyter.course_root(args.root)
    handle = broker.up(state=args.state)
    print(f"broker up: {broker.redact(handle.url)} (version {handle.version})")
    if importlib.util.find_spec("jupyterlab") is None:
        raise EventlabError(
            "JupyterLab is not installed in this environment",
            fix="run `make lab`, or pip install -c constraints.txt -e .",
        )
    command = _jupyter.command(root, port=args.port, open_browser=not args.no_browser)
    print(f"JupyterLab on {root}, opening {_jupyter.LANDING}")
    sys.stdout.flush()
    os.chdir(root)  # kernels and terminals start here: `eventlab grade labs/...` works as typed
    # Replace this process with JupyterLab, in an environment where `eventlab` is on PATH.
    os.execve(sys.executable, command, _jupyter.environment())  # noqa: S606


_CORE = frozenset({"up", "down", "status", "doctor", "lab"})


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

    up = sub.add_parser("up", help="start the broker (or reuse the running one)")
    up.add_argument("--json", action="store_true", help="print url, version, managed as JSON")
    up.add_argument("--port", type=int, default=None, help="port for a new managed broker")
    up.add_argument(
        "--persistence",
        choices=["none", "aof-everysec", "aof-always", "rdb"],
        default="aof-everysec",
        help="persistence mode of a new managed broker",
    )
    up.set_defaults(handler=_cmd_up)

    down = sub.add_parser("down", help="stop the managed broker")
    down.set_defaults(handler=_cmd_down)

    status = sub.add_parser("status", help="server version, streams, groups, lag, pending")
    status.add_argument("--json", action="store_true", help="print as JSON")
    status.set_defaults(handler=_cmd_status)

    doc = sub.add_parser("doctor", help="[OK]/[FAIL] for every dependency and the broker")
    doc.set_defaults(handler=_cmd_doctor)

    lab = sub.add_parser("lab", help="start the broker, then JupyterLab on the course")
    lab.add_argument(
        "--root",
        default=".",
        help="a folder in the course (default: here); JupyterLab opens its root",
    )
    lab.add_argument("--port", type=int, default=None, help="JupyterLab port")
    lab.add_argument("--no-browser", action="store_true", help="do not open a browser")
    lab.set_defaults(handler=_cmd_lab)

    if only == "workshop":
        # A room of learners runs `eventlab workshop …` often: 0.5 s instead of 2+ s.
        from eventlab import workshop  # noqa: PLC0415 - only when the command runs

        workshop.register_cli(sub)
    elif not core_only:
        for register in _extensions():
            register(sub)
    return parser


def _extensions() -> list[Callable[[argparse._SubParsersAction[argparse.ArgumentParser]], None]]:
    """Subcommands owned by other modules (faults, shop, labs, grading, workshop)."""
    from eventlab import consumer, contracts, faults, grading, labs, workshop  # noqa: PLC0415 - only when the command runs
    from eventlab.shop import app as shop_app  # noqa: PLC0415

    return [
        consumer.register_cli,
        workshop.register_cli,
        faults.register_cli,
        labs.register_cli,
        grading.register_cli,
        shop_app.register_cli,
        contracts.register_cli,
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
