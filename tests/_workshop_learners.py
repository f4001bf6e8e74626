"""Workshop learners for tests/test_workshop.py, each process started by ``processes.spawn``.

A process runs several learners as asyncio tasks on one shared broker. Every
learner uses the SAME stream, group and consumer names (``orders``,
``billing``, ``worker-1``) and goes through the kit: ``streams.stream_key``,
``streams.apublish_many`` and :class:`eventlab.consumer.Reliable` with dedupe
and dead letters. The learner named by ``EVENTLAB_NAMESPACE`` (the process's
first) calls ``stream_key`` without a namespace, so the env-var path decides
its keys; the others name theirs explicitly, as a process cannot hold two
environments.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import redis
import redis.asyncio

from eventlab import processes, streams, workshop
from eventlab.consumer import Effects, PermanentError, Reliable
from eventlab.envelope import Event

STREAM = "orders"
GROUP = "billing"
CONSUMER = "worker-1"
LESSON = "04-retries-and-dead-letters"
LAB = "04a-retries-and-dead-letters"


def is_poison(n: int) -> bool:
    """Order numbers ending in 3 can never be billed: the handler dead-letters them."""
    return str(n).endswith("3")


def is_duplicated(n: int) -> bool:
    """Every third order that is not poison is published twice (same event id)."""
    return n % 3 == 0 and not is_poison(n)


async def _learner(url: str, name: str, count: int, *, from_env: bool) -> None:
    stream = streams.stream_key(STREAM) if from_env else streams.stream_key(STREAM, namespace_=name)
    if stream != f"{{{name}:{STREAM}}}":
        raise AssertionError(f"learner {name} got stream key {stream!r}")
    events = [
        Event(type="OrderPlaced", source="orders", subject=f"order-{n}", data={"who": name, "n": n})
        for n in range(count)
    ]
    client = redis.asyncio.Redis.from_url(url, decode_responses=True)
    try:
        await streams.apublish_many(client, stream, events)
        await streams.apublish_many(
            client, stream, [e for e in events if is_duplicated(e.data["n"])]
        )
        await client.xadd(stream, {"junk": name})  # not an event: must become a dead letter
    finally:
        await client.aclose()

    reliable = Reliable(url, consumer=CONSUMER)

    @reliable.subscriber(stream, group=GROUP, start="0", block=0.1, min_idle=30.0)
    async def bill(event: Event, effects: Effects) -> None:
        effects.sadd(f"{stream}:who", event.data["who"])  # whose events this learner handled
        if is_poison(event.data["n"]):
            raise PermanentError(f"order {event.data['n']} can never be billed")
        effects.hincrby(f"{stream}:billed", event.subject or "", 1)

    async with reliable:
        if not await reliable.drain(timeout=90.0):
            raise AssertionError(f"learner {name} did not drain within 90 s")

    progress = redis.Redis.from_url(url, decode_responses=True)
    try:
        workshop.record_lesson(progress, learner=name, lesson=LESSON)
        billed = sum(1 for n in range(count) if not is_poison(n))
        workshop.record_score(progress, learner=name, lab=LAB, score=billed, max_score=count)
    finally:
        progress.close()


async def main(url: str, go: str, *learners: str) -> int:
    """Run ``name:count`` learners once the file ``go`` exists; the first is $EVENTLAB_NAMESPACE."""
    first = learners[0].split(":")[0]
    if os.environ.get("EVENTLAB_NAMESPACE") != first or streams.namespace() != first:
        print(f"EVENTLAB_NAMESPACE must name the first learner {first!r}", file=sys.stderr)  # noqa: T201
        return 2
    processes.signal_ready()
    deadline = time.monotonic() + 120
    while not Path(go).exists():  # every process starts writing the same names at once
        if time.monotonic() > deadline:
            print("the test never said go", file=sys.stderr)  # noqa: T201
            return 3
        await asyncio.sleep(0.01)
    await asyncio.gather(
        *(
            _learner(url, name, int(count), from_env=name == first)
            for name, _, count in (spec.partition(":") for spec in learners)
        )
    )
    return 0
