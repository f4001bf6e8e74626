"""Graded checks for lab 05 (backpressure): 8 points.

Workload: 1,000 events produced by the learner's ``produce`` with
``max_lag=100`` and ``maxlen=200`` while a slower consumer (20 entries every
5 ms, in another thread) reads them; a sampler records lag and stream length
every 2 ms; ``eventlab.checker.lost_by_retention`` judges what trimming lost.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from eventlab import _labkit as kit
from eventlab import checker
from eventlab.envelope import Event
from eventlab.grading import CheckContext, check
from eventlab.history import History

SEED = 505
GROUP = "analytics"
TOTAL = 1000
MAX_LAG = 100
MAXLEN = 200
SLACK = 40  # the sampler and the producer race by up to a read batch (20), twice


class _Run:
    def __init__(self, ctx: CheckContext) -> None:
        self.client = ctx.client()
        self.stream = ctx.key("clicks")
        self.client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        self.events = [
            Event(type="Clicked", source="web", data={"n": n, "page": ctx.rng.randrange(50)})
            for n in range(TOTAL)
        ]
        self.seen: set[str] = set()
        self.history = History()
        self.max_lag = 0
        self.max_len = 0
        self.stop = threading.Event()
        reader, sampler = ctx.client(), ctx.client()
        threads = [
            threading.Thread(target=self._consume, args=(reader,), daemon=True),
            threading.Thread(target=self._sample, args=(sampler,), daemon=True),
        ]
        for thread in threads:
            thread.start()
        try:
            ctx.exercise.produce(
                self.client, self.stream, GROUP, iter(self.events), max_lag=MAX_LAG, maxlen=MAXLEN
            )
            kit.wait_until(lambda: self._lag(self.client) == 0, timeout=5.0)
        finally:
            self.stop.set()
            for thread in threads:
                thread.join(5.0)
        for event in self.events:  # every event was handed to produce(): it must arrive
            self.history.ok("producer", "enqueue", event.id)

    def _lag(self, client: Any) -> int:
        added = int(client.xinfo_stream(self.stream)["entries-added"])
        return added - self.read

    read = 0

    def _consume(self, client: Any) -> None:
        while not self.stop.is_set():
            batch = kit.read_new(client, self.stream, GROUP, "slow", count=20)
            if batch:
                client.xack(self.stream, GROUP, *[i for i, _ in batch])
                self.seen.update(f["id"] for _, f in batch)
                self.history.ok("consumer", "dequeue", [f["id"] for _, f in batch])
                self.read += len(batch)
            time.sleep(0.005)

    def _sample(self, client: Any) -> None:
        while not self.stop.is_set():
            self.max_lag = max(self.max_lag, self._lag(client))
            self.max_len = max(self.max_len, int(client.xlen(self.stream)))
            time.sleep(0.002)


@check(points=4, hint="wait while the lag is at max_lag; trimming then only drops read entries")
def nothing_lost_to_trimming(ctx: CheckContext) -> None:
    """Every event reaches the consumer group: none trimmed before it was read."""
    run = _Run(ctx)
    present = checker.stream_event_ids(run.client, run.stream)
    verdict = checker.lost_by_retention(run.history, present=present)
    assert verdict.valid, (
        f"{verdict.counts['lost']} of {TOTAL} events never reached the group "
        f"({verdict.counts['trimmed']} trimmed from the stream before or after reading)"
    )


@check(points=3, hint="check group_lag before every XADD and sleep while it is >= max_lag")
def lag_stays_bounded(ctx: CheckContext) -> None:
    """The group's lag never goes (much) above max_lag while producing."""
    run = _Run(ctx)
    assert run.max_lag <= MAX_LAG + SLACK, f"lag reached {run.max_lag} (bound {MAX_LAG})"


@check(points=1, hint="XADD with maxlen=maxlen, approximate=True")
def stream_stays_capped(ctx: CheckContext) -> None:
    """The stream never grows far beyond maxlen (approximate trimming)."""
    run = _Run(ctx)
    bound = MAXLEN + 150  # MAXLEN ~ trims whole nodes of up to 100 entries
    assert run.max_len <= bound, f"stream grew to {run.max_len} entries (cap ~{MAXLEN})"
