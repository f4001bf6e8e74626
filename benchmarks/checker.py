"""How long the total-queue checker takes over a 1,000,000-operation history.

The history is synthetic but shaped like a real run: producers' enqueue invoke +
ok/info/fail, consumers' dequeues with some duplicates and some losses, and
nemesis fault records. Baseline measured in the same run: a plain Python
dict-counting pass over the same records, to show what vectorising buys.

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
from pathlib import Path

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
    started = time.perf_counter()
    acked, delivered = set(), Counter()
    for _t, _p, kind, f, value in history._rows:  # noqa: SLF001 - the benchmark reads raw rows
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


def main() -> None:
    """Build the history, time the checker (frame included), print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operations", type=int, default=1_000_000)
    parser.add_argument("--json", action="store_true", help='print {"operations":…,"seconds":…}')
    args = parser.parse_args()
    history = build(args.operations)
    started = time.perf_counter()
    frame = history.frame()
    framed = time.perf_counter() - started
    verdict = checker.total_queue(frame)
    seconds = time.perf_counter() - started
    if args.json:
        print(json.dumps({"operations": len(history), "seconds": round(seconds, 3)}))
        return
    base = baseline(history)
    recording, written = record_100k()
    print(f"history: {len(history):,} operations")
    print(f"total-queue checker: {seconds:.2f} s (of which History.frame() {framed:.2f} s)")
    print(f"  {verdict}")
    print(f"baseline pure-Python dict pass: {base:.2f} s (checker/baseline {seconds / base:.2f}x)")
    print("target: <= 5 s per 1,000,000 operations")
    print(
        f"recording 100,000 operations with History.op: {recording:.2f} s; "
        f"writing them as JSONL: {written:.2f} s"
    )


if __name__ == "__main__":
    main()
