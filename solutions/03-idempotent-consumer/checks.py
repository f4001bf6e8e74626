"""Graded checks for lab 03 (idempotent consumer): 8 points.

Workload (seeded): 400 ``PaymentReceived`` events, 100 of them published a
second time with the same event id, shuffled. Faults: a consumer process is
SIGKILLed just before one of its acks reaches the broker; in another run
``CRASH_POSITIONS`` consumers in turn die, the k-th just before the k-th
command it sends (k = 1 … CRASH_POSITIONS), so some consumer dies in every gap
between two commands of the first events it handles, whatever the handler's
length or order. A last consumer reclaims what they left pending and carries on.
The crashes come from the grader's fault proxy in front of the broker: they hit
every connection of the consumer's process, including one the handler opens.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from eventlab import _labkit as kit
from eventlab import broker, tracing
from eventlab.envelope import Event
from eventlab.grading import CheckContext, check

SEED = 303
GROUP = "ledger"
UNIQUE = 400
DUPLICATES = 100
BATCH = 20
# One doomed consumer per command position 1..N (the consumer loop's reads are
# not counted): the handler's commands for the first events of the batch.
# 24 covers every gap of a handler of up to 6 commands per event at least
# four times over (on different events), so no ordering of separate
# commands escapes, whatever the seed.
CRASH_POSITIONS = 24


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


def _doomed_consumer(url: str, stream: str, handle: Any, name: str) -> None:
    """A consumer (in a forked process the fault proxy kills where the check says)."""
    client = broker.client_for_url(url, decode_responses=True)
    _consume(client, handle, stream, name, reclaim=False)


def _run(ctx: CheckContext, *, crash: str = "") -> tuple[Any, str, Counter[str]]:
    client = ctx.client()
    stream = ctx.key("payments")
    events, expected = _workload(ctx)
    client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    kit.publish_all(client, stream, events)
    handle = ctx.exercise.handle
    if crash == "before-ack":
        worker = kit.fork(
            _doomed_consumer, ctx.url, stream, handle, "ledger-d",
            die_before=ctx.rng.randint(60, 300), only=kit.ACKS,
        )  # fmt: skip
        if not worker.join(ctx.timeout / 4):
            worker.kill()
            raise AssertionError("a consumer did not finish its batch (endless loop?)")
    elif crash == "anywhere":
        # Consumers die in turn before command 1, 2, ..., N of their life: every
        # gap between two commands of a handler is hit, deterministically.
        kit.sweep(
            _doomed_consumer, ctx.url, stream, handle, "ledger-d",
            positions=range(1, CRASH_POSITIONS + 1), timeout=ctx.timeout / 4,
        )  # fmt: skip
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


@check(points=2, hint="dedupe on event.id: re-published events carry the same id", timeout=20)
def duplicates_have_no_second_effect(ctx: CheckContext) -> None:
    """Re-published events (same id) are applied once."""
    client, stream, expected = _run(ctx)
    _assert_balances(client, stream, expected, ctx)


@check(points=2, hint="an event redelivered after a crash must not be applied again", timeout=20)
def crash_before_ack_no_double_effect(ctx: CheckContext) -> None:
    """A consumer killed before its ack: the redelivered event has no second effect."""
    client, stream, expected = _run(ctx, crash="before-ack")
    _assert_balances(client, stream, expected, ctx)


@check(
    points=2,
    hint="mark processed, apply the effect and XACK in ONE atomic step (a Lua script)",
    timeout=20,
)
def crash_anywhere_loses_nothing(ctx: CheckContext) -> None:
    """Consumers killed between any two commands of the handler: no effect lost or doubled."""
    client, stream, expected = _run(ctx, crash="anywhere")
    _assert_balances(client, stream, expected, ctx)


@check(points=2, hint="every handled entry must be acknowledged with XACK", timeout=20)
def pending_list_drained(ctx: CheckContext) -> None:
    """After the crashes and recovery, the group's pending list is empty."""
    client, stream, _ = _run(ctx, crash="anywhere")
    left = kit.pending_count(client, stream, GROUP)
    assert left == 0, f"{left} entries still pending (handled but never acknowledged)"


@check(
    points=2, hint="mark, apply and ack in one script call: one round trip per event", stretch=True
)
def one_round_trip_per_event(ctx: CheckContext) -> None:
    """Stretch: the handler costs at most one round trip per event (500 deliveries)."""
    client = ctx.client()
    stream = ctx.key("payments")
    events, expected = _workload(ctx)
    client.xgroup_create(stream, GROUP, id="0", mkstream=True)
    kit.publish_all(client, stream, events)
    counted = tracing.counted_client(ctx.url)
    handled = 0
    for _ in range(len(events) // 100 + 2):
        batch = kit.read_new(client, stream, GROUP, "ledger-fast", count=100)
        for entry_id, fields in batch:
            ctx.exercise.handle(counted, stream, GROUP, entry_id, Event.from_fields(fields))
            handled += 1
    trips = tracing.round_trips(counted)
    _assert_balances(client, stream, expected, ctx)
    assert trips <= handled + 3, (
        f"{trips} round trips for {handled} events ({trips / max(handled, 1):.1f} per event)"
    )
