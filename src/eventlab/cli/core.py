"""``eventlab up|down|status|doctor|lab``: the core commands (they load no heavy module).

The library side is :mod:`eventlab.broker`, :mod:`eventlab.doctor` and
:mod:`eventlab._jupyter` (lesson 00).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys

from eventlab import _env, broker, doctor, streams
from eventlab._errors import EventlabError
from eventlab.cli._common import Subcommands

__all__ = ["COMMANDS", "register"]

COMMANDS = frozenset({"up", "down", "status", "doctor", "lab"})
"""The commands :func:`register` adds: ``eventlab`` parses them without loading the rest."""


def _cmd_up(args: argparse.Namespace) -> int:
    if args.cluster:
        return _cmd_up_cluster(args)
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


def _cmd_up_cluster(args: argparse.Namespace) -> int:
    from eventlab import cluster  # noqa: PLC0415 - only this flag needs it

    if os.environ.get("REDIS_URL"):
        raise EventlabError(
            "REDIS_URL is set: lessons would use that broker, not a local cluster",
            fix="unset REDIS_URL, then eventlab up --cluster",
        )
    handle = cluster.up(state=args.state, persistence=args.persistence)
    nodes = handle.nodes()
    if args.json:
        print(
            json.dumps(
                {
                    "url": handle.url,
                    "version": handle.version,
                    "cluster": True,
                    "persistence": handle.persistence,
                    "state": str(handle.state),
                    "nodes": [
                        {n: getattr(node, n) for n in cluster.Node.__slots__} for node in nodes
                    ],
                }
            )
        )
        return 0
    print(f"cluster up: {handle.url} (version {handle.version}, {len(nodes)} nodes)")
    print(handle.nodes_frame().to_string(index=False))
    print(f"state folder {handle.state}")
    return 0


def _cmd_down(args: argparse.Namespace) -> int:
    if _env.get(_env.REDIS_URL):
        print("REDIS_URL is set: that broker is not eventlab's to stop; nothing done")
        return 0
    stopped = broker.down(state=args.state)  # the single node and a local cluster
    print("broker stopped" if stopped else "no managed broker was running")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    handle = broker.current(state=args.state)
    folder = None if _env.get(_env.REDIS_URL) else broker.state_dir(args.state)
    if handle is None:
        raise EventlabError(
            f"no broker is running (state folder {folder})", fix="start one with `eventlab up`"
        )
    kind = f"managed, pid {handle.pid}" if handle.managed else "REDIS_URL"
    if handle.cluster:
        kind = "REDIS_URL, cluster" if os.environ.get("REDIS_URL") else "local cluster"
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
        keys = sorted(
            str(key)
            for pattern in streams.key_patterns()
            for key in client.scan_iter(match=pattern, _type="stream")
        )
        nodes = _cluster_nodes(args.state) if handle.cluster else []
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
                        "cluster": handle.cluster,
                        "nodes": nodes,
                    }
                )
            )
            return 0
        print(f"broker {broker.redact(handle.url)} version {handle.version} ({kind})")
        print(where)
        for node in nodes:
            print("  node {port} {role}".format(**node) + _node_detail(node))
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


def _cluster_nodes(state: str | None) -> list[dict[str, object]]:
    """The local cluster's nodes (none listed for a cluster named by REDIS_URL)."""
    from eventlab import cluster  # noqa: PLC0415 - only a cluster needs it

    handle = None if os.environ.get("REDIS_URL") else cluster.current(state=state)
    if handle is None:
        return []
    return [{n: getattr(node, n) for n in cluster.Node.__slots__} for node in handle.nodes()]


def _node_detail(node: dict[str, object]) -> str:
    if node["role"] == "primary":
        return f", {node['slots']} slots"
    return f" of {node['primary']}" if node["role"] == "replica" else ""


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


def register(sub: Subcommands[argparse.ArgumentParser]) -> None:
    """Add ``eventlab up|down|status|doctor|lab`` to the command."""
    up = sub.add_parser("up", help="start the broker (or reuse the running one)")
    up.add_argument("--json", action="store_true", help="print url, version, managed as JSON")
    up.add_argument("--port", type=int, default=None, help="port for a new managed broker")
    up.add_argument(
        "--persistence",
        choices=broker.PERSISTENCE_MODES,
        default="aof-everysec",
        help="persistence mode of a new managed broker",
    )
    up.add_argument(
        "--cluster",
        action="store_true",
        help="start a local cluster instead: 3 primaries + 3 replicas on 127.0.0.1",
    )
    up.set_defaults(handler=_cmd_up)

    down = sub.add_parser("down", help="stop the managed broker (and a local cluster)")
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
