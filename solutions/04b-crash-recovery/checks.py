"""Graded checks for lab 04b (crash recovery): 8 points.

Fault: a consumer process reads a batch and is SIGKILLed part-way through it
(seeded position), stranding the rest in the pending list. A live consumer
runs the learner's ``reclaim`` beside its reader; a slow live consumer holds
entries it is still working on.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from typing import Any

from eventlab import _labkit as kit
from eventlab import checker, tracing
from eventlab.envelope import Event
from eventlab.grading import CheckContext, check
from eventlab.history import History

SEED = 42
GROUP = "shipping"
# Generous wall-clock bounds, so verdicts repeat on a busy 2-core machine: a
# correct reclaimer drains in ~min_idle + 0.1 s; one that never drains never will.
RECOVERY_BOUND = 10.0  # seconds after min_idle to drain the stranded entries
HOLD = 1.0  # seconds the slow live consumer works on its batch
BUSY_IDLE = 5.0  # min_idle while the slow consumer works: 4 s of stall before a false claim


def _handler(client: Any, stream: str, counts: str) -> Any:
    def handle(entry_id: str, fields: dict[str, str]) -> None:
        pipe = client.pipeline(transaction=True)
        pipe.hincrby(counts, fields["id"], 1)
        pipe.xack(stream, GROUP, entry_id)
        pipe.execute()

    return handle


def _doomed(url: str, stream: str, counts: str, read: int, survive: int) -> None:
    """Read ``read`` entries, handle ``survive`` of them, then die by SIGKILL."""
    client = kit.crashing_client(url, crash_at=0)
    handle = _handler(client, stream, counts)
    batch = kit.read_new(client, stream, GROUP, "doomed", count=read)
    for entry_id, fields in batch[:survive]:
        handle(entry_id, fields)
    os.kill(os.getpid(), signal.SIGKILL)


def _slow(url: str, stream: str, counts: str, hold: float) -> None:
    """A live consumer: read 20 entries, work on them for ``hold`` seconds, then ack."""
    client = kit.crashing_client(url, crash_at=0)
    handle = _handler(client, stream, counts)
    batch = kit.read_new(client, stream, GROUP, "slow", count=20)
    time.sleep(hold)
    for entry_id, fields in batch:
        handle(entry_id, fields)


def _setup(ctx: CheckContext, total: int) -> tuple[Any, str, str, list[str]]:
    client = ctx.client()
    stream = ctx.key("shipments")
    counts = stream + ":handled"
    client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    events = [Event(type="ShipmentRequested", source="orders", data={"n": n}) for n in range(total)]
    kit.publish_all(client, stream, events)
    return client, stream, counts, [e.id for e in events]


def _crash(ctx: CheckContext, stream: str, counts: str, read: int, survive: int) -> float:
    worker = kit.fork(_doomed, ctx.url, stream, counts, read, survive)
    if not worker.join(5.0):
        worker.kill()
    assert worker.exitcode == -signal.SIGKILL, "the doomed consumer did not die as planned"
    return time.monotonic()


@check(
    points=4, hint="XAUTOCLAIM with min_idle_time in milliseconds; handle every entry", timeout=30
)
def stranded_entries_recovered(ctx: CheckContext) -> None:
    """Entries stranded by a killed consumer are handled once within the idle bound, all acked."""
    client, stream, counts, ids = _setup(ctx, 200)
    _crash(ctx, stream, counts, read=200, survive=ctx.rng.randint(20, 80))
    min_idle = 0.2
    handle = _handler(client, stream, counts)
    began = time.monotonic()
    while time.monotonic() - began < min_idle + RECOVERY_BOUND:
        kit.read_new(client, stream, GROUP, "live", count=50)  # nothing new: all were read
        ctx.exercise.reclaim(client, stream, GROUP, "live", min_idle=min_idle, handle=handle)
        if kit.pending_count(client, stream, GROUP) == 0:
            break
        time.sleep(0.05)
    left = kit.pending_count(client, stream, GROUP)
    assert left == 0, (
        f"{left} stranded entries still pending {min_idle + RECOVERY_BOUND:.1f} s after the kill"
    )
    history = History()
    for event_id in ids:
        history.ok("producer", "enqueue", event_id)
    effects = [i for i, n in client.hgetall(counts).items() for _ in range(int(n))]
    verdict = checker.exactly_once(history, effects=effects)
    assert verdict.valid, (
        f"{verdict.counts['missing']} events never handled, "
        f"{verdict.counts['duplicated']} handled more than once"
    )


@check(points=2, hint="pass min_idle (as milliseconds) to XAUTOCLAIM; never claim busy entries")
def live_consumer_not_robbed(ctx: CheckContext) -> None:
    """Entries a slow but live consumer is still working on are not claimed from it."""
    client, stream, counts, _ = _setup(ctx, 20)
    worker = kit.fork(_slow, ctx.url, stream, counts, HOLD)
    try:
        assert kit.wait_until(lambda: kit.pending_count(client, stream, GROUP) == 20, timeout=10)
        handle = _handler(client, stream, counts)
        stolen = 0
        for _ in range(5):  # five calls while the slow consumer still holds them
            stolen += ctx.exercise.reclaim(
                client, stream, GROUP, "live", min_idle=BUSY_IDLE, handle=handle
            )
            time.sleep(0.02)
        worker.join(10.0)
    finally:
        worker.kill()
    twice = sum(1 for n in Counter(client.hgetall(counts)).values() if int(n) > 1)
    assert stolen == 0, f"claimed {stolen} entries idle less than min_idle (a live consumer's)"
    assert twice == 0, f"{twice} events handled twice"


@check(points=2, hint="loop: XAUTOCLAIM returns at most COUNT entries; follow the cursor to 0-0")
def one_call_claims_everything(ctx: CheckContext) -> None:
    """One reclaim call takes over all 250 stranded entries (more than one XAUTOCLAIM page)."""
    client, stream, counts, _ = _setup(ctx, 250)
    _crash(ctx, stream, counts, read=250, survive=0)
    time.sleep(0.15)
    handle = _handler(client, stream, counts)
    got = ctx.exercise.reclaim(client, stream, GROUP, "live", min_idle=0.1, handle=handle)
    assert got == 250, f"one call reclaimed {got} of 250 stranded entries"
    left = kit.pending_count(client, stream, GROUP)
    assert left == 0, f"{left} still pending after the call"


@check(points=2, hint="one XAUTOCLAIM per page of count entries, nothing per entry", stretch=True)
def reclaim_in_few_round_trips(ctx: CheckContext) -> None:
    """Stretch: 1,000 stranded entries taken over in at most 12 round trips (pages of 100)."""
    client, stream, counts, _ = _setup(ctx, 1000)
    kit.read_new(client, stream, GROUP, "gone", count=1000)  # read, never acked: stranded
    time.sleep(0.15)
    counted = tracing.counted_client(ctx.url)
    got = ctx.exercise.reclaim(
        counted, stream, GROUP, "live", min_idle=0.1, handle=_handler(client, stream, counts)
    )
    trips = tracing.round_trips(counted)
    assert got == 1000, f"reclaimed {got} of 1000"
    assert trips <= 12, f"{trips} round trips to reclaim 1,000 entries (pages of 100: 11)"
