"""Publishing throughput: eventlab.streams next to raw redis-py, same server, same run.

Prints events/s for raw single XADD, raw pipelined XADD (prebuilt fields), eventlab
``publish`` (one at a time, envelope encoded per event) and eventlab ``publish_many``
(pipelined batches), the median of ``--repeats`` runs taken in turns, the ratios,
and each path's client and server CPU per event. ``--json`` prints one JSON object
in events/s. Target: eventlab_batch >= 0.95x raw_pipelined.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable

import redis

from eventlab import broker, streams
from eventlab.envelope import Event

STREAM = "bench:{publish}"
TARGET = 0.95  # eventlab_batch / raw_pipelined


def _events(n: int) -> list[Event]:
    return [
        Event(
            type="OrderPlaced",
            source="orders",
            subject=f"order-{i}",
            data={"order_id": f"order-{i}", "sku": "sku-7", "qty": 2, "total": 500},
        )
        for i in range(n)
    ]


def _server_cpu(client: redis.Redis) -> float:
    info: dict[str, float] = client.info("cpu")  # type: ignore[assignment]
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def _once(client: redis.Redis, n: int, run: Callable[[], object]) -> tuple[float, float, float]:
    """Events/s, then client and server CPU microseconds per event, of one run."""
    client.delete(STREAM)
    server, cpu, started = _server_cpu(client), time.process_time(), time.perf_counter()
    run()
    rate = n / (time.perf_counter() - started)
    cpu, server = time.process_time() - cpu, _server_cpu(client) - server
    assert client.xlen(STREAM) == n
    return rate, cpu / n * 1e6, server / n * 1e6


CPU: dict[str, tuple[float, float]] = {}
"""Median client and server CPU microseconds per event of each path, after :func:`measure`."""


def _interleaved(
    client: redis.Redis, paths: dict[str, tuple[int, Callable[[], object]]], repeats: int
) -> dict[str, float]:
    """Median rate per path, the paths taking turns so load on a shared machine hits all alike."""
    samples: dict[str, list[tuple[float, float, float]]] = {name: [] for name in paths}
    for _ in range(repeats):
        for name, (n, run) in paths.items():
            samples[name].append(_once(client, n, run))
    for name, runs in samples.items():
        CPU[name] = (statistics.median(r[1] for r in runs), statistics.median(r[2] for r in runs))
    return {name: statistics.median(r[0] for r in runs) for name, runs in samples.items()}


def measure(*, events: int, single: int, batch: int, repeats: int) -> dict[str, float]:
    """Return events/s of the four publishing paths on a fresh managed broker."""
    with tempfile.TemporaryDirectory() as state:
        handle = broker.up(state=state, port=0, persistence="none")
        client = handle.client()
        try:
            many = _events(events)
            few = many[:single]
            prebuilt = [e.to_fields() for e in many]

            def raw_single() -> None:
                for fields in prebuilt[:single]:
                    client.xadd(STREAM, fields)  # type: ignore[arg-type]

            def raw_pipelined() -> None:
                for start in range(0, events, batch):
                    pipe = client.pipeline(transaction=False)
                    for fields in prebuilt[start : start + batch]:
                        pipe.xadd(STREAM, fields)  # type: ignore[arg-type]
                    pipe.execute()

            def eventlab_single() -> None:
                for event in few:
                    streams.publish(client, STREAM, event)

            def eventlab_batch() -> None:
                streams.publish_many(client, STREAM, many, chunk=batch)

            return _interleaved(
                client,
                {
                    "raw_single": (single, raw_single),
                    "eventlab_single": (single, eventlab_single),
                    "raw_pipelined": (events, raw_pipelined),
                    "eventlab_batch": (events, eventlab_batch),
                },
                repeats,
            )
        finally:
            client.close()
            handle.stop()


def main() -> None:
    """Run the benchmark and print a table, or JSON with ``--json``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=20_000, help="events per pipelined run")
    parser.add_argument("--single", type=int, default=5_000, help="events per one-at-a-time run")
    parser.add_argument("--batch", type=int, default=100, help="events per pipeline")
    parser.add_argument("--repeats", type=int, default=5, help="runs per path (median)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    rates = measure(events=args.events, single=args.single, batch=args.batch, repeats=args.repeats)
    if args.json:
        print(json.dumps({k: round(v, 1) for k, v in rates.items()}))
        return
    print(f"{'path':18s} {'events/s':>12s}  ratio")
    print(f"{'raw_single':18s} {rates['raw_single']:12,.0f}  1.00 (baseline)")
    print(f"{'eventlab_single':18s} {rates['eventlab_single']:12,.0f}  "
          f"{rates['eventlab_single'] / rates['raw_single']:.2f}x raw_single")  # fmt: skip
    print(f"{'raw_pipelined':18s} {rates['raw_pipelined']:12,.0f}  1.00 (baseline)")
    ratio = rates["eventlab_batch"] / rates["raw_pipelined"]
    verdict = "meets" if ratio >= TARGET else "MISSES"
    print(f"{'eventlab_batch':18s} {rates['eventlab_batch']:12,.0f}  "
          f"{ratio:.2f}x raw_pipelined ({verdict} the {TARGET}x target)")  # fmt: skip
    print("CPU per event (median; client = this process, server = INFO cpu):")
    for name, (client_us, server_us) in CPU.items():
        print(f"  {name:16s} client {client_us:5.1f} us, server {server_us:5.1f} us")
    raw, ours = sum(CPU["raw_pipelined"]), sum(CPU["eventlab_batch"])
    print(
        f"client + server, raw_pipelined / eventlab_batch: {raw / ours:.2f}x "
        "(what the ratio tends to when other processes hold the cores)"
    )


if __name__ == "__main__":
    main()
