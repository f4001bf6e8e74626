"""Graded checks for lab 05 (backpressure): 8 points.

Workload: 1,000 events produced by the learner's ``produce`` with
``max_lag=100`` and ``maxlen=200`` while a consumer in another thread reads
them at half the producer's pace, counted in entries, not seconds: it reads a
batch of 20 after every 40 new entries, or when the producer is waiting (no
new entry for 5 ms: a throttled producer polling the lag — watched on the
stream, so a producer on a connection of its own is paced the same), or when
the producer is done. Each read is one MULTI with
``XINFO STREAM`` and ``XLEN``, so the lag and length it records are exact and
their peaks are never missed (the lag only grows between reads). Verdicts so
repeat on a busy machine. ``eventlab.checker.lost_by_retention`` judges what
trimming lost.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from eventlab import _labkit as kit
from eventlab import checker, tracing
from eventlab.envelope import Event
from eventlab.grading import CheckContext, check
from eventlab.history import History

SEED = 505
GROUP = "analytics"
TOTAL = 1000
MAX_LAG = 100
MAXLEN = 200
SLACK = 5  # the producer's check-then-XADD race: one entry, plus a little margin
BATCH = 20
PACE = 2 * BATCH  # the consumer reads one batch per PACE new entries: half the pace
STALL = 0.005  # seconds without a new entry: the producer waits, so read one batch


class _Run:
    def __init__(self, ctx: CheckContext) -> None:
        self.client = ctx.client()
        self.stream = ctx.key("clicks")
        self.client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        self.events = [
            Event(type="Clicked", source="web", data={"n": n, "page": ctx.rng.randrange(50)})
            for n in range(TOTAL)
        ]
        self.history = History()
        self.position = 0  # entries added up to the last one the consumer read
        self.max_lag = 0
        self.max_len = 0
        self.done = threading.Event()
        self.stop = threading.Event()
        reading = ctx.client()
        reading.ping()  # connected before the count starts: the reader's reads are not counted
        # The consumer watches the stream, not the producer's client, so a producer
        # on a connection of its own is paced the same; its round trips are counted
        # (by the grader's fault proxy, on every connection it opens from here on).
        self.producer = tracing.counted_client(ctx.url)
        reader = threading.Thread(target=self._consume, args=(reading,), daemon=True)
        reader.start()
        try:
            ctx.exercise.produce(
                self.producer, self.stream, GROUP, iter(self.events), max_lag=MAX_LAG,
                maxlen=MAXLEN,
            )  # fmt: skip
            self.done.set()
            kit.wait_until(lambda: self._added(self.client) == self.position, timeout=10.0)
        finally:
            self.done.set()
            self.stop.set()
            reader.join(10.0)
            self.producer.close()
        for event in self.events:  # every event was handed to produce(): it must arrive
            self.history.ok("producer", "enqueue", event.id)

    def _added(self, client: Any) -> int:
        return int(client.xinfo_stream(self.stream)["entries-added"])

    def _due(self, added: int, last_read_at: int, waiting: bool) -> bool:  # noqa: FBT001 - private
        if added <= self.position:
            return False
        return self.done.is_set() or waiting or added - last_read_at >= PACE

    def _consume(self, client: Any) -> None:
        last_read_at = 0  # entries-added at this consumer's last read
        seen, since = -1, time.monotonic()
        while not self.stop.is_set():
            added = self._added(client)
            if added != seen:
                seen, since = added, time.monotonic()
            if not self._due(added, last_read_at, time.monotonic() - since >= STALL):
                time.sleep(0.001)
                continue
            # One transaction: the lag and the length just before this read are exact.
            pipe = client.pipeline(transaction=True)
            pipe.xinfo_stream(self.stream)
            pipe.xlen(self.stream)
            pipe.xreadgroup(GROUP, "slow", {self.stream: ">"}, count=BATCH)
            info, length, reply = pipe.execute()
            last_read_at = int(info["entries-added"])
            self.max_lag = max(self.max_lag, last_read_at - self.position)
            self.max_len = max(self.max_len, int(length))
            batch = kit.read_entries(reply)  # a cluster transaction returns the raw map
            since = time.monotonic()  # one batch per wait
            if batch:
                client.xack(self.stream, GROUP, *[i for i, _ in batch])
                self.history.ok("consumer", "dequeue", [f["id"] for _, f in batch])
                self.position = int(json.loads(batch[-1][1]["data"])["n"]) + 1
            elif self.done.is_set():
                self.position = last_read_at  # everything after was trimmed unread


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


@check(
    points=2, hint="one lag read per publish while under the bound; no busy polling", stretch=True
)
def few_commands_per_event(ctx: CheckContext) -> None:
    """Stretch: the producer sends at most 2.2 commands per event, waits included."""
    run = _Run(ctx)
    trips = tracing.round_trips(run.producer)
    per_event = trips / TOTAL
    assert per_event <= 2.2, f"{trips} round trips for {TOTAL} events ({per_event:.2f} each)"
