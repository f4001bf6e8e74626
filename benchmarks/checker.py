"""How long every checker takes over a 1,000,000-operation history.

The history is synthetic but shaped like a real run: producers' enqueue invoke +
ok/info/fail, consumers' dequeues with some duplicates and some losses, and
nemesis fault records. Each checker is timed on it: total-queue, exactly-once
(one effect per dequeue), lost-by-retention (the oldest tenth trimmed), and,
on frames with one row per operation of the same history (each event an
order: placed at its enqueue, paid at its ok, completed at each dequeue),
one-terminal-state, monotonic-versions (versions 1, 2, 3; a hundred
regressions), convergence (each operation a sample) and stale-read (each
acknowledged enqueue a write of version 1 of its id, each dequeue a read of it
that began 100 ns earlier; a hundred reads saw nothing). ``seconds`` is
History.frame() plus every checker. ``read`` is History.read_jsonl() of the
same history written as JSONL. Baseline measured in the same run: a plain
Python dict-counting pass over the same records.

    .venv/bin/python benchmarks/checker.py [--operations N] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from eventlab import checker
from eventlab.history import History


def build(operations: int, *, seed: int = 1) -> History:
    """Return a history of about ``operations`` records (enqueue 2 per event, dequeue ~1)."""
    rng = random.Random(seed)
    events = operations // 3
    ids = [str(uuid.UUID(int=rng.getrandbits(128), version=4)) for _ in range(events)]
    start = time.time_ns()
    rows = []
    for i, event_id in enumerate(ids):
        t = start + i * 1000
        rows.append((t, f"producer-{i % 4}", "invoke", "enqueue", event_id))
        roll = rng.random()
        kind = "ok" if roll < 0.98 else ("info" if roll < 0.995 else "fail")
        rows.append((t + 300, f"producer-{i % 4}", kind, "enqueue", event_id))
    dequeues = operations - len(rows)
    for j in range(dequeues):
        event_id = ids[j % events] if j < events else ids[rng.randrange(events)]
        rows.append((start + j * 1000 + 700, f"consumer-{j % 2}", "ok", "dequeue", event_id))
    history = History()
    history.extend(rows)
    history.nemesis("partition", "start")
    history.nemesis("partition", "stop")
    return history


def baseline(history: History) -> float:
    """Seconds for a straightforward dict-and-set Python pass (no pandas)."""
    rows = history.rows()
    started = time.perf_counter()
    acked, delivered = set(), Counter()
    for _t, _p, kind, f, value in rows:
        if f == "enqueue" and kind == "ok":
            acked.add(value)
        elif f == "dequeue" and kind == "ok":
            delivered[value] += 1
    _lost = [i for i in acked if i not in delivered]
    _dups = [i for i, n in delivered.items() if n > 1]
    return time.perf_counter() - started


def record_100k() -> tuple[float, float]:
    """Seconds to record 100,000 operations (invoke + ok) and to write them as JSONL."""
    history = History()
    started = time.perf_counter()
    for i in range(100_000):
        with history.op("producer-0", "enqueue", str(i)):
            pass
    recorded = time.perf_counter() - started
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        history.write_jsonl(Path(folder) / "history.jsonl")
        written = time.perf_counter() - started
    return recorded, written


def read_back(history: History) -> tuple[float, float]:
    """Wall and CPU seconds of History.read_jsonl() on ``history`` written as JSONL."""
    with tempfile.TemporaryDirectory() as folder:
        path = history.write_jsonl(Path(folder) / "history.jsonl")
        started, cpu = time.perf_counter(), time.process_time()
        back = History.read_jsonl(path)
        took, took_cpu = time.perf_counter() - started, time.process_time() - cpu
    if len(back) != len(history):
        raise SystemExit(f"read {len(back)} records, wrote {len(history)}")
    return took, took_cpu


def derived(frame: pd.DataFrame, *, seed: int = 1) -> dict[str, object]:
    """Inputs of the checkers that judge frames: one row per operation of ``frame``."""
    rng = np.random.default_rng(seed)
    n = len(frame)
    values = frame["value"].to_numpy(dtype=object)
    is_dequeue = (frame["f"].to_numpy(dtype=object) == "dequeue") & (
        frame["type"].to_numpy(dtype=object) == "ok"
    )
    enq_ok = (frame["f"].to_numpy(dtype=object) == "enqueue") & (
        frame["type"].to_numpy(dtype=object) == "ok"
    )
    kinds = frame["type"].to_numpy(dtype=object)
    # each event is an order: placed at its enqueue invoke, paid at its ok,
    # completed (terminal) at each dequeue; versions 1, 2, 3 in that order
    ops = frame["process"].to_numpy(dtype=object) != "nemesis"  # nemesis values are dicts
    aggregates = pd.Series(values[ops], dtype=object)
    states = np.where(is_dequeue, "OrderCompleted", np.where(enq_ok, "OrderPaid", "OrderPlaced"))
    versions = np.where(is_dequeue, 3, np.where(kinds == "invoke", 1, 2)).astype(np.int64)
    versions[rng.choice(np.flatnonzero(is_dequeue), size=100, replace=False)] = 0  # regressions
    states, versions = states[ops], versions[ops]
    acked = pd.unique(pd.Series(values[enq_ok], dtype=object))
    times = frame["time"].to_numpy(dtype="datetime64[ns]")
    deq = np.flatnonzero(is_dequeue)
    seen = np.ones(len(deq), dtype=np.int64)
    seen[rng.choice(len(deq), size=100, replace=False)] = 0  # stale reads
    reads = pd.DataFrame(
        {
            "time": np.concatenate(
                [times[enq_ok], times[deq] - np.timedelta64(100, "ns"), times[deq]]
            ),
            "process": np.concatenate(
                [
                    frame["process"].to_numpy(dtype=object)[enq_ok],
                    *[frame["process"].to_numpy(dtype=object)[deq]] * 2,
                ]
            ),
            "type": ["ok"] * int(enq_ok.sum()) + ["invoke"] * len(deq) + ["ok"] * len(deq),
            "f": ["write"] * int(enq_ok.sum()) + ["read"] * (2 * len(deq)),
            "key": np.concatenate([values[enq_ok], values[deq], values[deq]]),
            "version": np.concatenate([np.ones(int(enq_ok.sum()), dtype=np.int64), seen, seen]),
        }
    )
    # in time order, each read's invoke just before its ok; object columns as History.frame()
    reads = reads.sort_values("time", kind="stable").reset_index(drop=True)
    reads = reads.astype(dict.fromkeys(("process", "type", "f", "key"), object))
    return {
        "effects": pd.Series(values[is_dequeue], dtype=object),
        "present": acked[len(acked) // 10 :],  # the oldest tenth trimmed by MAXLEN
        "transitions": pd.DataFrame({"aggregate": aggregates, "state": states}),
        "observations": pd.DataFrame({"aggregate": aggregates, "version": versions}),
        "samples": pd.DataFrame(
            {
                "time": pd.to_datetime(frame["time"].to_numpy(), utc=True),
                "disagreeing": np.maximum(0, (n // 2 - np.arange(n)) // 1000),
            }
        ),
        "heal": pd.Timestamp(frame["time"].iloc[n // 3]),
        "reads": reads,
    }


def checks(frame: pd.DataFrame, inputs: dict[str, object]) -> dict[str, Callable[[], object]]:
    """Every checker, ready to run on the history's frame and the derived inputs."""
    return {
        "total-queue": lambda: checker.total_queue(frame),
        "exactly-once": lambda: checker.exactly_once(frame, effects=inputs["effects"]),
        "lost-by-retention": lambda: checker.lost_by_retention(frame, present=inputs["present"]),
        "one-terminal-state": lambda: checker.one_terminal_state(
            inputs["transitions"], terminal={"OrderCompleted", "OrderCancelled"}
        ),
        "monotonic-versions": lambda: checker.monotonic_versions(inputs["observations"]),
        "convergence": lambda: checker.convergence(
            inputs["samples"], heal=inputs["heal"], within=5.0
        ),
        "stale-read": lambda: checker.stale_reads(inputs["reads"]),
    }


def main() -> None:
    """Build the history, time History.frame() and every checker, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operations", type=int, default=1_000_000)
    parser.add_argument("--json", action="store_true", help='print {"operations":…,"seconds":…}')
    args = parser.parse_args()
    history = build(args.operations)
    started, cpu = time.perf_counter(), time.process_time()
    frame = history.frame()
    framed, framed_cpu = time.perf_counter() - started, time.process_time() - cpu
    inputs = derived(frame)
    timings: dict[str, float] = {}
    cpus: dict[str, float] = {}
    verdicts: dict[str, object] = {}
    for name, run in checks(frame, inputs).items():
        started, cpu = time.perf_counter(), time.process_time()
        verdicts[name] = run()
        timings[name] = time.perf_counter() - started
        cpus[name] = time.process_time() - cpu
    seconds = framed + sum(timings.values())
    read, read_cpu = read_back(history)
    if args.json:
        print(
            json.dumps(
                {
                    "operations": len(history),
                    "seconds": round(seconds, 3),
                    "read_seconds": round(read, 3),
                }
            )
        )
        return
    base = baseline(history)
    recording, written = record_100k()
    print(f"history: {len(history):,} operations")
    # CPU seconds beside wall seconds: on a shared machine the wall clock also
    # counts the time other processes held the cores
    print(f"History.frame(): {framed:.2f} s (cpu {framed_cpu:.2f} s)")
    for name, took in timings.items():
        print(f"{name} checker: {took:.2f} s (cpu {cpus[name]:.2f} s)  {verdicts[name]}")
    print(
        f"all checkers + frame: {seconds:.2f} s (cpu {framed_cpu + sum(cpus.values()):.2f} s; "
        "target: <= 2 s per 1,000,000 operations)"
    )
    print(
        f"History.read_jsonl() of the same history: {read:.2f} s (cpu {read_cpu:.2f} s; "
        "target: <= 2 s per 1,000,000 operations)"
    )
    tq = framed + timings["total-queue"]
    print(
        f"baseline pure-Python dict pass (total-queue's counting only): {base:.2f} s "
        f"(frame + total-queue / baseline {tq / base:.2f}x)"
    )
    print(
        f"recording 100,000 operations with History.op: {recording:.2f} s; "
        f"writing them as JSONL: {written:.2f} s"
    )


if __name__ == "__main__":
    main()
