"""Graded checks for lab 03 (idempotent consumer): 8 points.

Workload (seeded): 400 ``PaymentReceived`` events, 100 of them published a
second time with the same event id, shuffled. Fault: the first consumer process
is SIGKILLed just before one of its acks reaches the broker; a second consumer
reclaims what it left pending and carries on.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from eventlab import _labkit as kit
from eventlab.envelope import Event
from eventlab.grading import CheckContext, check

SEED = 303
GROUP = "ledger"
UNIQUE = 400
DUPLICATES = 100
BATCH = 20


def _workload(ctx: CheckContext) -> tuple[list[Event], Counter[str]]:
    events = [
        Event(
            type="PaymentReceived",
            source="payments",
            data={"account": f"acct-{ctx.rng.randrange(20)}", "amount": ctx.rng.randint(1, 99)},
        )
        for _ in range(UNIQUE)
    ]
    expected: Counter[str] = Counter()
    for event in events:
        expected[event.data["account"]] += event.data["amount"]
    published = events + ctx.rng.sample(events, DUPLICATES)
    ctx.rng.shuffle(published)
    return published, expected


def _consume(client: Any, handle: Any, stream: str, consumer: str, *, reclaim: bool) -> None:
    """The loop the grader runs around the learner's handler (bounded rounds)."""
    for _ in range(3 if reclaim else 0):
        claimed = kit.reclaim_all(client, stream, GROUP, consumer, min_idle=0.0)
        if not claimed:
            break
        for entry_id, fields in claimed:
            handle(client, stream, GROUP, entry_id, Event.from_fields(fields))
    for _ in range((UNIQUE + DUPLICATES) // BATCH + 2):
        batch = kit.read_new(client, stream, GROUP, consumer, count=BATCH)
        if not batch:
            break
        for entry_id, fields in batch:
            handle(client, stream, GROUP, entry_id, Event.from_fields(fields))


def _first_consumer(url: str, stream: str, crash_at: int, handle: Any) -> None:
    client = kit.crashing_client(url, crash_at=crash_at)
    _consume(client, handle, stream, "ledger-1", reclaim=False)


def _run(ctx: CheckContext, *, crash: bool) -> tuple[Any, str, Counter[str]]:
    client = ctx.client()
    stream = ctx.key("payments")
    events, expected = _workload(ctx)
    client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    kit.publish_all(client, stream, events)
    handle = ctx.exercise.handle
    if crash:
        crash_at = ctx.rng.randint(60, 300)
        worker = kit.fork(_first_consumer, ctx.url, stream, crash_at, handle)
        if not worker.join(ctx.timeout / 2):
            worker.kill()
            raise AssertionError("the first consumer did not finish its batch (endless loop?)")
    _consume(client, handle, stream, "ledger-2", reclaim=True)
    _consume(client, handle, stream, "ledger-2", reclaim=True)
    return client, stream, expected


def _assert_balances(client: Any, stream: str, expected: Counter[str], ctx: CheckContext) -> None:
    got = {k: int(v) for k, v in client.hgetall(ctx.exercise.balances_key(stream)).items()}
    want = dict(expected)
    if got == want:
        return
    over = sum(max(0, got.get(k, 0) - v) for k, v in want.items())
    under = sum(max(0, v - got.get(k, 0)) for k, v in want.items())
    raise AssertionError(
        f"balances wrong: {over} credited too much (duplicates applied), "
        f"{under} too little (effects lost) across {len(want)} accounts"
    )


@check(points=3, hint="dedupe on event.id: re-published events carry the same id", timeout=20)
def duplicates_have_no_second_effect(ctx: CheckContext) -> None:
    """Re-published events (same id) are applied once."""
    client, stream, expected = _run(ctx, crash=False)
    _assert_balances(client, stream, expected, ctx)


@check(
    points=3,
    hint="mark processed, apply the effect and XACK in one atomic step (a Lua script)",
    timeout=20,
)
def crash_before_ack_no_double_effect(ctx: CheckContext) -> None:
    """A consumer killed before its ack: the redelivered event has no second effect."""
    client, stream, expected = _run(ctx, crash=True)
    _assert_balances(client, stream, expected, ctx)


@check(points=2, hint="every handled entry must be acknowledged with XACK", timeout=20)
def pending_list_drained(ctx: CheckContext) -> None:
    """After the crash and recovery, the group's pending list is empty."""
    client, stream, _ = _run(ctx, crash=True)
    left = kit.pending_count(client, stream, GROUP)
    assert left == 0, f"{left} entries still pending (handled but never acknowledged)"
