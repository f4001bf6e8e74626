"""Reliable-consumer throughput on the local cluster next to one node, same machine, same run.

Both brokers run the same server binary (the kit's :func:`eventlab.broker.find_server`,
or ``--binary``): one managed node, and a local cluster of three primaries with one
replica each (:mod:`eventlab.cluster`). On each, a backlog of ``--events`` events
(20,000 by default) is spread over ``--partitions`` partition streams (6, named by
``streams.stream_key``, so on the cluster they land on different primaries), and one
``consumer.Reliable`` with a subscription per partition drains it: envelope decoded,
handler per event recording ``HINCRBY``, one Lua call per batch doing dedupe + effect
+ XACK. The median of ``--repeats`` runs is printed with the ratio cluster/single.

On one machine the cluster cannot be faster than its cores allow: its primaries
share them with the client, and its replicas copy every write. What the figure
shows is the price of the cluster client and of replication, not the scale-out a
cluster gives across machines.

``--json`` prints ``{"single": …, "cluster": …, "ratio": …, "events": …,
"partitions": …, "server": …}`` (events/s).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis

from eventlab import broker, cluster, streams
from eventlab.consumer import Effects, Reliable
from eventlab.envelope import Event

LIMIT = 300.0  # seconds a run may take to drain its backlog (a loaded machine)


def _backlog(client: redis.Redis, parts: list[str], n: int) -> None:
    """A fresh backlog: ``n`` events spread round-robin over the partitions, groups at 0."""
    client.flushall()
    per_part: dict[str, list[Event]] = {part: [] for part in parts}
    for i in range(n):
        per_part[parts[i % len(parts)]].append(
            Event(type="OrderPlaced", source="orders", subject=f"order-{i}", data={"n": i})
        )
    for part, events in per_part.items():
        streams.publish_many(client, part, events, chunk=1000)
        streams.create_group(client, part, "bench", start="0")


async def _drain(handle: broker.Broker, parts: list[str], n: int) -> float:
    reliable = Reliable(handle, consumer="bench-1")
    for part in parts:

        @reliable.subscriber(part, group="bench", start="0", batch=100)
        async def count(event: Event, effects: Effects, part: str = part) -> None:
            effects.hincrby(f"{part}:counts", event.type, 1)

    started = time.perf_counter()
    async with reliable:
        if not await reliable.drain(timeout=LIMIT, poll=0.005):
            raise TimeoutError(f"{n} events not drained in {LIMIT:.0f} s")
    return n / (time.perf_counter() - started)


def _measure(handle: broker.Broker, *, events: int, partitions: int) -> float:
    parts = [streams.stream_key(f"bench-p{p}", namespace_="bench") for p in range(partitions)]
    client = handle.client()
    try:
        _backlog(client, parts, events)
        rate = asyncio.run(_drain(handle, parts, events))
        handled = sum(int(client.hget(f"{part}:counts", "OrderPlaced") or 0) for part in parts)
        if handled != events:
            raise RuntimeError(f"handled {handled} of {events} events")
        return rate
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    """Run both brokers in one process and print events/s and the ratio."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--partitions", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--binary", default=None, help="server executable (default: the kit's)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    server = broker.find_server(binary=args.binary)
    root = Path(tempfile.mkdtemp(prefix="eventlab-bench-cluster-"))
    single = broker.up(state=root / "single", port=0, persistence="none", binary=server.path)
    ring = cluster.up(state=root / "ring", persistence="none", binary=server.path)
    rates: dict[str, list[float]] = {"single": [], "cluster": []}
    try:
        for _ in range(args.repeats):  # interleaved: a load spike hits both alike
            for name, handle in (("single", single), ("cluster", ring.broker)):
                rates[name].append(_measure(handle, events=args.events, partitions=args.partitions))
    finally:
        single.stop()
        ring.stop()
    result = {name: round(statistics.median(values)) for name, values in rates.items()}
    report = {
        **result,
        "ratio": round(result["cluster"] / result["single"], 2),
        "events": args.events,
        "partitions": args.partitions,
        "server": f"{server.kind} {single.version}",
    }
    if args.json:
        print(json.dumps(report))
    else:
        print(
            f"{report['server']}, {args.events} events over {args.partitions} partitions, "
            f"median of {args.repeats}: one node {result['single']:,} ev/s, cluster "
            f"{result['cluster']:,} ev/s (cluster/single {report['ratio']}x)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
