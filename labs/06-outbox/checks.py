"""Graded checks for lab 06 (the dual write through an outbox): 12 points.

Workload (seeded): ``OrderAccepted`` events for orders of the shop, each with
its own event id. Faults: processes running the learner's ``accept`` are
SIGKILLed in turn, the k-th just before the k-th command it sends (k = 1 …
``CRASH_POSITIONS``), so some process dies in every gap between two commands of
``accept``, whatever their number or order; relay processes are killed the same
way. The kills come from the grader's fault proxy in front of the broker: they
hit every connection the process opens. After every crash sweep a clean relay
runs, and the verdict compares the service's state with what reached the public
stream.
"""

from __future__ import annotations

from typing import Any

from eventlab import _labkit as kit
from eventlab import broker, tracing
from eventlab.envelope import Event
from eventlab.grading import CheckContext, check

SEED = 606
ORDERS = 40
PER_DOOMED = 4  # orders each doomed process tries to accept
CRASH_POSITIONS = 12  # >= every gap of an accept of up to 3 commands, for 4 orders


def _event(order: str, ctx: CheckContext) -> Event:
    return Event(
        type="OrderAccepted",
        source="orders",
        subject=order,
        data={"order_id": order, "customer": f"customer-{ctx.rng.randrange(20)}",
              "total": 100 * ctx.rng.randint(1, 9)},
    )  # fmt: skip


def _published(client: Any, stream: str) -> list[str]:
    """Event ids on the public stream, in order (repeats kept)."""
    return [fields.get("id", "") for _, fields in kit.entries_in(client, stream)]


def _accepted(client: Any, ctx: CheckContext, stream: str) -> set[str]:
    state = client.hgetall(ctx.exercise.state_key(stream))
    return {order for order, value in state.items() if value == "accepted"}


def _doomed_accept(url: str, stream: str, accept: Any, batches: list[list[Event]]) -> None:
    """Accept the next batch of orders (in a forked process the fault proxy kills)."""
    client = broker.client_for_url(url, decode_responses=True)
    for event in batches.pop(0):
        accept(client, stream, event.subject, event)


def _doomed_relay(url: str, stream: str, relay: Any) -> None:
    """Relay in small batches (in a forked process the fault proxy kills)."""
    client = broker.client_for_url(url, decode_responses=True)
    relay(client, stream, batch=10)


def _agree(client: Any, ctx: CheckContext, stream: str, events: list[Event]) -> None:
    """State and published events agree for every order: both or neither."""
    accepted = _accepted(client, ctx, stream)
    on_stream = set(_published(client, stream))
    silent = sorted(e.subject for e in events if e.subject in accepted and e.id not in on_stream)
    ghosts = sorted(e.subject for e in events if e.id in on_stream and e.subject not in accepted)
    assert not silent, (
        f"{len(silent)} orders accepted but their event never published, e.g. {silent[:3]} "
        "(a crash between the state change and the event)"
    )
    assert not ghosts, (
        f"{len(ghosts)} events published for orders never accepted, e.g. {ghosts[:3]}"
    )


@check(points=2, hint="commit the state and the event together; relay copies them out", timeout=15)
def accepted_orders_are_published(ctx: CheckContext) -> None:
    """Every accepted order's event reaches the stream, once, in order, fields unchanged."""
    client = ctx.client()
    stream = ctx.key("shop")
    events = [_event(f"order-{n}", ctx) for n in range(ORDERS)]
    for event in events:
        ctx.exercise.accept(client, stream, event.subject, event)
    moved = ctx.exercise.relay(client, stream)
    assert _accepted(client, ctx, stream) == {e.subject for e in events}, "not every order accepted"
    published = kit.entries_in(client, stream)
    assert [f.get("id") for _, f in published] == [e.id for e in events], (
        f"the stream holds {len(published)} events for {len(events)} accepted orders, or not in "
        "the order they were accepted"
    )
    changed = [e.id for e, (_, f) in zip(events, published, strict=True) if f != e.to_fields()]
    assert not changed, f"{len(changed)} events published with other fields than committed"
    assert moved == len(events), f"relay() returned {moved}, it published {len(events)}"


@check(points=2, hint="accept() writes only the service's own keys; only relay() publishes")
def accept_writes_only_its_own_keys(ctx: CheckContext) -> None:
    """Before the relay runs, nothing of accept() is on the public stream."""
    client = ctx.client()
    stream = ctx.key("shop")
    for n in range(5):
        event = _event(f"order-{n}", ctx)
        ctx.exercise.accept(client, stream, event.subject, event)
    early = client.xlen(stream) if client.exists(stream) else 0
    assert early == 0, (
        f"accept() wrote {early} entries to the public stream itself: the broker is another "
        "system, so that is a dual write again"
    )


@check(
    points=3,
    hint="the state change and the outbox entry in ONE step (MULTI/EXEC): both or neither",
    timeout=20,
)
def crash_in_accept_loses_nothing(ctx: CheckContext) -> None:
    """Processes killed between any two commands of accept(): state and stream still agree."""
    client = ctx.client()
    stream = ctx.key("shop")
    positions = range(1, CRASH_POSITIONS + 1)
    batches = [[_event(f"order-{k}-{n}", ctx) for n in range(PER_DOOMED)] for k in positions]
    events = [event for batch in batches for event in batch]
    # the k-th process takes batch k (the parent pops it after each run) and dies before command k
    kit.sweep(
        _doomed_accept, ctx.url, stream, ctx.exercise.accept, batches, positions=positions,
        timeout=ctx.timeout / 4, after_each=lambda _: batches.pop(0),
    )  # fmt: skip
    ctx.exercise.relay(client, stream)
    assert _accepted(client, ctx, stream), "no order was ever accepted"
    _agree(client, ctx, stream, events)


@check(
    points=3,
    hint="publish first, record the position after (or both in one step); never skip ahead",
    timeout=20,
)
def crash_in_relay_loses_nothing(ctx: CheckContext) -> None:
    """Relays killed between any two of their commands: a last relay still publishes it all."""
    client = ctx.client()
    stream = ctx.key("shop")
    events = [_event(f"order-{n}", ctx) for n in range(ORDERS)]
    for event in events:
        ctx.exercise.accept(client, stream, event.subject, event)
    kit.sweep(
        _doomed_relay, ctx.url, stream, ctx.exercise.relay,
        positions=range(1, CRASH_POSITIONS + 1), timeout=ctx.timeout / 4,
    )  # fmt: skip
    ctx.exercise.relay(client, stream)
    published = _published(client, stream)
    lost = [e.subject for e in events if e.id not in set(published)]
    assert not lost, f"{len(lost)} events never published after relay crashes, e.g. {lost[:3]}"
    firsts = list(dict.fromkeys(published))
    assert firsts == [e.id for e in events], "events first published out of outbox order"
    again = ctx.exercise.relay(client, stream)
    assert again == 0, f"a relay with nothing new published {again} events again"


@check(points=2, hint="record how far the relay got; start after it next time")
def relay_resumes_where_it_stopped(ctx: CheckContext) -> None:
    """A second relay publishes nothing; after ten more orders, exactly those ten."""
    client = ctx.client()
    stream = ctx.key("shop")
    first = [_event(f"order-{n}", ctx) for n in range(20)]
    for event in first:
        ctx.exercise.accept(client, stream, event.subject, event)
    ctx.exercise.relay(client, stream)
    assert ctx.exercise.relay(client, stream) == 0, "a second relay published events again"
    more = [_event(f"order-more-{n}", ctx) for n in range(10)]
    for event in more:
        ctx.exercise.accept(client, stream, event.subject, event)
    moved = ctx.exercise.relay(client, stream, batch=3)
    assert moved == len(more), f"the next relay published {moved}, ten were new"
    published = _published(client, stream)
    assert published == [e.id for e in first + more], "the stream is not the outbox, in order"


@check(
    points=2, hint="relay a batch in one pipeline: read, publish and record per batch", stretch=True
)
def relay_in_few_round_trips(ctx: CheckContext) -> None:
    """Stretch: 2,000 outbox events relayed in at most 65 round trips (3 per batch of 100)."""
    client = ctx.client()
    stream = ctx.key("shop")
    events = [_event(f"order-{n}", ctx) for n in range(2000)]
    pipe = client.pipeline(transaction=False)
    for event in events:
        pipe.hset(ctx.exercise.state_key(stream), event.subject, "accepted")
        pipe.xadd(ctx.exercise.outbox_key(stream), event.to_fields())  # type: ignore[arg-type]
    pipe.execute()
    counted = tracing.counted_client(ctx.url)
    moved = ctx.exercise.relay(counted, stream)
    trips = tracing.round_trips(counted)
    assert moved == len(events), f"relayed {moved} of {len(events)}"
    assert trips <= 65, f"{trips} round trips to relay {len(events)} events"
