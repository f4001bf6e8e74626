"""Consuming throughput: eventlab's reliable consumer next to raw redis-py and faststream.

One managed broker, one run, the same backlog shape and the same small effect
(``HINCRBY <counts> <event type> 1`` per event) for all three paths, and the
same redis-py parser (hiredis when installed, which the kit depends on):

(a) raw:        asyncio ``XREADGROUP COUNT 100``, then one pipeline per batch
                with the HINCRBYs and one XACK (no decoding, no dedupe, no retries);
(a') raw_overlapped: the same, but the next batch is read while the previous
                batch's pipeline runs, as eventlab does — the honest baseline for
                eventlab's overlap (the ratio against (a) flatters it);
(b) faststream: a plain ``RedisBroker`` subscriber (``StreamSub`` with
                ``max_records=100``) handling one message per call, acked by faststream;
(c) eventlab:   ``consumer.Reliable`` with idempotency and metrics on: envelope decoded, handler
                per event recording the effect, one Lua call per batch doing dedupe
                + effect + XACK, the next batch read while that call runs.

Each path drains a pre-published backlog of ``--events`` events (20,000 by
default; faststream too, unless ``--faststream-events`` reduces its count, which
the output then says); the paths take turns, and the median of ``--repeats``
runs of each is printed with the ratios and each path's client and server CPU
per event (the client's includes the watcher that polls the count). ``--json``
prints ``{"raw": …, "raw_overlapped": …, "faststream": …, "eventlab": …}`` in
msg/s.
Targets: eventlab >= 0.9x raw and >= 10x faststream.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable

import redis
import redis.asyncio
import redis.utils
from faststream.redis import RedisBroker, StreamSub

from eventlab import broker, streams
from eventlab.consumer import Effects, Reliable
from eventlab.envelope import Event
from eventlab.metrics import Metrics

COUNT = 100
FIELD = "OrderPlaced"
LIMIT = 600.0  # seconds a path may take to drain its backlog (faststream, loaded machine)


def _events(n: int) -> list[Event]:
    return [
        Event(
            type=FIELD,
            source="orders",
            subject=f"order-{i}",
            data={"order_id": f"order-{i}", "sku": "sku-7", "qty": 2, "total": 500},
        )
        for i in range(n)
    ]


def _prepare(client: redis.Redis, stream: str, events: list[Event]) -> str:
    """A fresh stream holding the backlog, a group at 0, and an empty counter."""
    client.delete(stream, f"{stream}:counts", f"{stream}:seen:bench", f"{stream}:dlq")
    streams.publish_many(client, stream, events, chunk=1000)
    streams.create_group(client, stream, "bench", start="0")
    return f"{stream}:counts"


async def _until_counted(client: redis.asyncio.Redis, counts: str, n: int, limit: float) -> None:
    deadline = time.perf_counter() + limit
    while int(await client.hget(counts, FIELD) or 0) < n:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"{counts}: fewer than {n} events handled in {limit:.0f} s")
        await asyncio.sleep(0.002)


async def _raw(url: str, stream: str, counts: str, n: int) -> float:
    client = redis.asyncio.Redis.from_url(url, decode_responses=True)
    watcher = redis.asyncio.Redis.from_url(url, decode_responses=True)
    done = asyncio.Event()

    async def loop() -> None:
        while not done.is_set():
            reply = await client.xreadgroup("bench", "raw", {stream: ">"}, count=COUNT, block=100)
            if not reply:
                continue
            rows = reply[0][1]
            pipe = client.pipeline(transaction=False)
            for _, fields in rows:
                pipe.hincrby(counts, fields["type"], 1)
            pipe.xack(stream, "bench", *(entry_id for entry_id, _ in rows))
            await pipe.execute()

    started = time.perf_counter()
    task = asyncio.create_task(loop())
    await _until_counted(watcher, counts, n, LIMIT)
    elapsed = time.perf_counter() - started
    done.set()
    await task
    await client.aclose()
    await watcher.aclose()
    return n / elapsed


async def _raw_overlapped(url: str, stream: str, counts: str, n: int) -> float:
    """Raw, but batch N+1 is read while batch N's pipeline runs (two connections)."""
    reader = redis.asyncio.Redis.from_url(url, decode_responses=True)
    writer = redis.asyncio.Redis.from_url(url, decode_responses=True)
    watcher = redis.asyncio.Redis.from_url(url, decode_responses=True)
    done = asyncio.Event()

    async def commit(rows: list[tuple[str, dict[str, str]]]) -> None:
        pipe = writer.pipeline(transaction=False)
        for _, fields in rows:
            pipe.hincrby(counts, fields["type"], 1)
        pipe.xack(stream, "bench", *(entry_id for entry_id, _ in rows))
        await pipe.execute()

    async def loop() -> None:
        inflight: asyncio.Task[None] | None = None
        while not done.is_set():
            reply = await reader.xreadgroup(
                "bench", "raw-overlapped", {stream: ">"}, count=COUNT, block=100
            )
            if inflight is not None:  # one commit in flight at a time, as in eventlab
                await inflight
                inflight = None
            if reply:
                inflight = asyncio.create_task(commit(reply[0][1]))
        if inflight is not None:
            await inflight

    started = time.perf_counter()
    task = asyncio.create_task(loop())
    await _until_counted(watcher, counts, n, LIMIT)
    elapsed = time.perf_counter() - started
    done.set()
    await task
    for made in (reader, writer, watcher):
        await made.aclose()
    return n / elapsed


async def _faststream(url: str, stream: str, counts: str, n: int) -> float:
    effect = redis.asyncio.Redis.from_url(url, decode_responses=True)
    watcher = redis.asyncio.Redis.from_url(url, decode_responses=True)
    fs = RedisBroker(url, logger=None)

    @fs.subscriber(stream=StreamSub(stream, group="bench", consumer="fs", max_records=COUNT))
    async def handle(body: object) -> None:  # noqa: ARG001 - the effect is per event, not per body
        await effect.hincrby(counts, FIELD, 1)

    started = time.perf_counter()
    await fs.start()
    await _until_counted(watcher, counts, n, LIMIT)
    elapsed = time.perf_counter() - started
    await fs.stop()
    await effect.aclose()
    await watcher.aclose()
    return n / elapsed


async def _eventlab(url: str, stream: str, counts: str, n: int) -> float:
    watcher = redis.asyncio.Redis.from_url(url, decode_responses=True)
    metrics = Metrics()  # left on, as in the course: it must be cheap
    reliable = Reliable(url, consumer="eventlab", metrics=metrics)

    @reliable.subscriber(stream, group="bench", start="0", batch=COUNT, dedupe=True)
    async def handle(event: Event, effects: Effects) -> None:
        effects.hincrby(counts, event.type, 1)

    started = time.perf_counter()
    await reliable.start()
    await _until_counted(watcher, counts, n, LIMIT)
    elapsed = time.perf_counter() - started
    await reliable.stop()
    await watcher.aclose()
    assert (metrics.frame()["outcome"] == "ok").sum() == n
    return n / elapsed


Runner = Callable[[str, str, str, int], Awaitable[float]]


def _server_cpu(client: redis.Redis) -> float:
    info: dict[str, float] = client.info("cpu")  # type: ignore[assignment]
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _once(
    handle: broker.Broker, client: redis.Redis, name: str, run: Runner, *, n: int, attempt: int
) -> tuple[float, float, float]:
    """msg/s, then client and server CPU microseconds per event, of one run of one path."""
    stream = f"bench:{{{name}-{attempt}}}"
    counts = _prepare(client, stream, _events(n))
    server, cpu = _server_cpu(client), time.process_time()
    rate = asyncio.run(run(handle.url, stream, counts, n))
    cpu, server = time.process_time() - cpu, _server_cpu(client) - server
    assert client.hget(counts, FIELD) == str(n), f"{name}: an event was handled twice"
    assert streams.pending_summary(client, stream, "bench").count == 0 or name == "faststream"
    client.delete(stream, counts, f"{stream}:seen:bench")
    return rate, cpu / n * 1e6, server / n * 1e6


def measure(
    *, events: int, faststream_events: int, repeats: int
) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """Return msg/s of the four consuming paths on a fresh managed broker, and their CPU.

    The paths take turns (raw, raw_overlapped, faststream, eventlab, raw, …) and
    each reports its median: on a shared machine, load that comes and goes then
    hits every path alike instead of whichever ran during it. The CPU is the
    median client (this process) and server (``INFO cpu``) microseconds per event:
    what the path costs, whatever else the machine runs.
    """
    paths: dict[str, tuple[Runner, int]] = {
        "raw": (_raw, events),
        "raw_overlapped": (_raw_overlapped, events),
        "faststream": (_faststream, faststream_events),
        "eventlab": (_eventlab, events),
    }
    samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in paths}
    with tempfile.TemporaryDirectory() as state:
        handle = broker.up(state=state, port=0, persistence="none")
        client = handle.client()
        try:
            for attempt in range(repeats):
                for name, (run, n) in paths.items():
                    samples[name].append(_once(handle, client, name, run, n=n, attempt=attempt))
        finally:
            client.close()
            handle.stop()
    rates = {name: statistics.median(s[0] for s in runs) for name, runs in samples.items()}
    cpu = {
        name: (statistics.median(s[1] for s in runs), statistics.median(s[2] for s in runs))
        for name, runs in samples.items()
    }
    return rates, cpu


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument(
        "--faststream-events",
        type=int,
        default=None,
        help="events for faststream (default: --events); ~100x slower than the others",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="print one JSON object (msg/s)")
    args = parser.parse_args(argv)
    fs_events = args.events if args.faststream_events is None else args.faststream_events
    rates, cpu = measure(events=args.events, faststream_events=fs_events, repeats=args.repeats)
    if args.json:
        print(json.dumps({k: round(v, 1) for k, v in rates.items()}))
        return 0
    parser_name = "hiredis" if redis.utils.HIREDIS_AVAILABLE else "pure-Python parser"
    print(f"redis-py parser: {parser_name}; median of {args.repeats} runs")
    print(f"{args.events:,} events per path")
    reduced = (
        f"  (REDUCED: measured on {fs_events:,} events, not {args.events:,})"
        if fs_events != args.events
        else ""
    )
    labels = {
        "raw": f"(a)  raw XREADGROUP COUNT {COUNT} + pipelined effect + XACK",
        "raw_overlapped": "(a') raw, next read overlapping the previous commit",
        "faststream": "(b)  faststream, one message per call",
        "eventlab": "(c)  eventlab Reliable, idempotent, with metrics",
    }
    for name, label in labels.items():
        tail = reduced if name == "faststream" else ""
        client_us, server_us = cpu[name]
        print(
            f"{label:<58} {rates[name]:>10,.0f} msg/s  cpu/event: client {client_us:5.1f} us, "
            f"server {server_us:5.1f} us{tail}"
        )
    ours = rates["eventlab"]
    print(f"eventlab / raw            = {ours / rates['raw']:.2f}x  (target >= 0.9x)")
    print(
        f"eventlab / raw_overlapped = {ours / rates['raw_overlapped']:.2f}x"
        "  (same overlap: what decoding, dedupe, retries and metrics cost)"
    )
    print(f"eventlab / faststream     = {ours / rates['faststream']:.1f}x  (target >= 10x)")
    total = {name: sum(cpu[name]) for name in ("raw", "eventlab")}
    print(
        f"CPU per event, client + server: raw {total['raw']:.1f} us, eventlab "
        f"{total['eventlab']:.1f} us; their ratio {total['raw'] / total['eventlab']:.2f}x is "
        "what eventlab / raw tends to when other processes hold the cores"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
