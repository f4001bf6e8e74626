"""``eventlab faults …``: steer the fault proxy, break the managed broker, run a scenario.

The library side is :mod:`eventlab.faults` (lessons 03, 04, 11) and
:mod:`eventlab.scenarios` (``eventlab faults scenario NAME``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import threading
import time

from eventlab import broker as broker_mod
from eventlab import faults
from eventlab.cli._common import Subcommands

__all__ = ["register"]


def _cli_target(args: argparse.Namespace) -> faults.RemoteProxy:
    return faults.remote(control_port=args.control, state=args.state)


def _cmd_serve(args: argparse.Namespace) -> int:
    upstream = args.upstream or broker_mod.up(state=args.state).url
    proxy = faults.start(
        upstream, port=args.port, control_port=args.control_port, seed=args.seed, state=args.state
    )
    print(
        # the proxied URL keeps the upstream's password (clients need it): never print it
        json.dumps(
            {
                "url": broker_mod.redact(proxy.url),
                "upstream": broker_mod.redact(proxy.upstream),
                "port": proxy.port,
                "control_port": proxy.control_port,
            }
        ),
        flush=True,
    )
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        faults.stop()
        with contextlib.suppress(OSError):
            (faults.record_path(args.state)).unlink()
    return 0


def _cmd_control(args: argparse.Namespace) -> int:
    action = args.fault_action
    record = faults.record_path(args.state)
    if action == "status" and args.control is None and not record.exists():
        # nothing recorded: no proxy runs, which is a status, not an error
        status = {"running": False, "record": str(record)}
        print(
            json.dumps(status)
            if args.json
            else f"no fault proxy is running (none recorded in {record})"
        )
        return 0
    target = _cli_target(args)
    if action == "latency":
        target.latency(args.seconds, jitter=args.jitter, direction=args.direction)
    elif action == "bandwidth":
        target.bandwidth(args.bytes_per_second, direction=args.direction)
    elif action == "partition":
        target.partition(direction=args.direction, mode=args.mode)
    elif action == "unpartition":
        target.unpartition(direction=args.direction)
    elif action == "reset":
        target.reset()
    elif action == "heal":
        target.heal()
    print(json.dumps(target.status(), indent=None if args.json else 2))
    return 0


def _cmd_broker(args: argparse.Namespace) -> int:
    handle = broker_mod.up(state=args.state)
    action = args.fault_action
    if action == "pause":
        # a CLI process cannot leave a timer behind: it waits, then resumes
        handle.pause(args.seconds)
        try:
            time.sleep(args.seconds)
        finally:
            handle.resume()
        message = f"broker paused for {args.seconds:g} s, resumed"
    elif action == "kill-broker":
        faults.kill_broker(handle)
        message = "broker killed (SIGKILL); `eventlab up` starts it again on its data folder"
    else:
        handle = faults.restart_broker(handle, persistence=args.persistence, graceful=not args.hard)
        message = f"broker restarted ({handle.persistence}), pid {handle.pid}"
    print(message)
    return 0


def _cmd_scenario(args: argparse.Namespace) -> int:
    from eventlab import scenarios  # noqa: PLC0415 - loads the checkers only when asked

    if args.name is None:
        print("\n".join(sorted(scenarios.SCENARIOS)))
        return 0
    handle = broker_mod.up(state=args.state)
    # scenarios that kill or restart the broker get a private one (never yours)
    crash = args.name in scenarios.CRASH_SCENARIOS
    result = scenarios.run(args.name, None if crash else handle, seed=args.seed)
    if args.json:
        report = {
            "scenario": result.name,
            "seed": result.seed,
            "as_expected": result.as_expected,
            "verdicts": {
                name: {"valid": v.valid, "expected": result.expected.get(name), "counts": v.counts}
                for name, v in result.verdicts.items()
            },
            "facts": result.facts,
        }
        print(json.dumps(report, default=str))
    else:
        print(result)
    return 0 if result.as_expected else 1


def register(sub: Subcommands[argparse.ArgumentParser]) -> None:
    """Add ``eventlab faults …``: proxy faults, broker faults and scenarios (see ``--help``)."""
    parser = sub.add_parser("faults", help="run or steer the fault proxy (latency, partition, …)")
    actions = parser.add_subparsers(dest="fault_action", required=True)

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--state", help="state folder holding proxy.json")
        p.add_argument("--control", type=int, help="control port (default: from proxy.json)")
        p.add_argument("--json", action="store_true", help="print the status on one line")
        p.set_defaults(handler=_cmd_control)

    serve = actions.add_parser("serve", help="run a proxy in the foreground until Ctrl-C")
    serve.add_argument("--upstream", help="broker URL (default: the managed broker)")
    serve.add_argument("--port", type=int, default=0, help="proxy port (default: any free)")
    serve.add_argument("--control-port", type=int, default=0, help="control port")
    serve.add_argument("--seed", type=int, default=0, help="seed for the jitter")
    serve.add_argument("--state", help="state folder for proxy.json")
    serve.set_defaults(handler=_cmd_serve)

    common(actions.add_parser("status", help="show the faults now applied"))
    lat = actions.add_parser("latency", help="delay bytes by SECONDS (0 turns it off)")
    lat.add_argument("seconds", type=float)
    lat.add_argument("--jitter", type=float, default=0.0, help="± seconds, seeded")
    lat.add_argument(
        "--direction", choices=["upstream", "downstream", "both"], default="downstream"
    )
    common(lat)
    bw = actions.add_parser("bandwidth", help="limit to BYTES_PER_SECOND (0 lifts the limit)")
    bw.add_argument("bytes_per_second", type=float)
    bw.add_argument("--direction", choices=["upstream", "downstream", "both"], default="downstream")
    common(bw)
    part = actions.add_parser("partition", help="cut the connection until `heal`")
    part.add_argument("--direction", choices=["upstream", "downstream", "both"], default="both")
    part.add_argument("--mode", choices=["hold", "drop"], default="hold")
    common(part)
    unpart = actions.add_parser("unpartition", help="lift the partition on one direction")
    unpart.add_argument("--direction", choices=["upstream", "downstream", "both"], default="both")
    common(unpart)
    common(actions.add_parser("reset", help="reset every open connection now"))
    common(actions.add_parser("heal", help="clear every network fault"))
    _register_broker_cli(actions)


def _register_broker_cli(actions: Subcommands[argparse.ArgumentParser]) -> None:
    """Add the broker faults and scenarios to ``eventlab faults``."""
    pause = actions.add_parser("pause", help="freeze the managed broker for SECONDS")
    pause.add_argument("seconds", type=float)
    pause.add_argument("--state", help="state folder of the managed broker")
    pause.set_defaults(handler=_cmd_broker)
    kill = actions.add_parser("kill-broker", help="SIGKILL the managed broker (a crash)")
    kill.add_argument("--state", help="state folder of the managed broker")
    kill.set_defaults(handler=_cmd_broker)
    restart = actions.add_parser("restart", help="restart the managed broker")
    restart.add_argument("--persistence", choices=broker_mod.PERSISTENCE_MODES, default=None)
    restart.add_argument("--hard", action="store_true", help="kill -9 instead of SHUTDOWN")
    restart.add_argument("--state", help="state folder of the managed broker")
    restart.set_defaults(handler=_cmd_broker)
    scenario = actions.add_parser(
        "scenario", help="run a seeded failure scenario and print its verdicts (no name: list)"
    )
    scenario.add_argument("name", nargs="?", help="scenario name (omit to list them)")
    scenario.add_argument("--seed", type=int, default=0)
    scenario.add_argument("--state", help="state folder of the broker to use")
    scenario.add_argument("--json", action="store_true", help="one JSON object")
    scenario.set_defaults(handler=_cmd_scenario)
