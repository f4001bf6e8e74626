"""Graded checks for lab 08 (schema evolution): 10 points.

The compatibility verdicts are judged against ``eventlab.schema``'s registry
rules on 60 seeded schema changes (a field added, removed, made required,
given a default, its type widened or narrowed). The upcaster and downcaster
are judged on the real broker: a stream holding v1 and v2 ``OrderPlaced``
events, read through ``eventlab.schema.Registry`` by a new and an old consumer.
Faults (seeded): a quarter of the events are delivered twice
(``faults.duplicate_burst``) and delivery is shuffled within windows of five
(``faults.out_of_order``). Consumers dedupe by event id, so the learner's
converters must give the same answer for every copy of an event, in any
arrival order: no state kept between calls, no randomness.
"""

from __future__ import annotations

import copy
import random
from typing import Any

from eventlab import _labkit as kit
from eventlab import faults, streams
from eventlab.envelope import Event
from eventlab.grading import CheckContext, check
from eventlab.schema import Registry, compatibility_problems, format_uri

SEED = 808
CASES = 60
_DEFAULTS = {"string": "x", "integer": 0, "number": 0.5}


def _schema(rng: random.Random) -> dict[str, Any]:
    names = rng.sample(["order", "customer", "amount", "note", "sku"], rng.randint(2, 4))
    props: dict[str, Any] = {n: {"type": rng.choice(list(_DEFAULTS))} for n in names}
    for name, prop in props.items():
        if rng.random() < 0.2:
            prop["default"] = _DEFAULTS[prop["type"]]
        props[name] = prop
    required = [n for n in names if rng.random() < 0.6]
    return {"type": "object", "properties": props, "required": required,
            "additionalProperties": False}  # fmt: skip


def _mutate(old: dict[str, Any], rng: random.Random) -> dict[str, Any]:  # noqa: C901 - one branch per kind of change
    new = copy.deepcopy(old)
    props, required = new["properties"], new["required"]
    for _ in range(rng.choice([1, 1, 2])):
        change = rng.choice(
            ["add", "add-required", "add-default", "remove", "require", "unrequire", "retype"]
        )
        free = [n for n in ("region", "email", "qty", "note", "sku") if n not in props]
        if change.startswith("add") and free:
            name = rng.choice(free)
            kind = rng.choice(list(_DEFAULTS))
            props[name] = {"type": kind}
            if change != "add":
                required.append(name)
            if change == "add-default":
                props[name]["default"] = _DEFAULTS[kind]
        elif change == "remove" and len(props) > 1:
            name = rng.choice(sorted(props))
            del props[name]
            if name in required:
                required.remove(name)
        elif change == "require":
            optional = [n for n in props if n not in required]
            if optional:
                required.append(rng.choice(optional))
        elif change == "unrequire" and required:
            required.remove(rng.choice(required))
        elif change == "retype":
            name = rng.choice(sorted(props))
            props[name] = {"type": rng.choice(list(_DEFAULTS))}
    return new


def _cases(seed: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    rng = random.Random(seed)  # noqa: S311 - seeded cases
    cases = []
    for _ in range(CASES):
        old = _schema(rng)
        cases.append((_mutate(old, rng), old))
    return cases


def _judge(ctx: CheckContext, modes: list[str]) -> None:
    wrong = []
    for new, old in _cases(ctx.seed):
        for mode in modes:
            problems = compatibility_problems(new, [old], mode)
            expected = not problems
            got = ctx.exercise.compatible(new, old, mode=mode)
            if got is not expected:
                wrong.append((mode, old, new, problems))
    if wrong:
        mode, old, new, problems = wrong[0]
        why = str(problems[0]) if problems else "the registry finds no problem"
        raise AssertionError(
            f"{len(wrong)} of {CASES * len(modes)} verdicts differ from the registry; e.g. "
            f"{mode} old={old['properties']} required={old['required']} -> "
            f"new={new['properties']} required={new['required']}: {why}"
        )


@check(points=3, hint="BACKWARD = can_read(new, old): the three rules in can_read's docstring")
def backward_rule(ctx: CheckContext) -> None:
    """BACKWARD verdicts agree with the registry on 60 seeded schema changes."""
    _judge(ctx, ["BACKWARD"])


@check(points=2, hint="FORWARD swaps reader and writer; FULL needs both")
def forward_and_full(ctx: CheckContext) -> None:
    """FORWARD and FULL verdicts agree with the registry."""
    _judge(ctx, ["FORWARD", "FULL"])


def _stream(ctx: CheckContext) -> tuple[Registry, list[Event], int]:
    client = ctx.client()
    registry = Registry(client)
    ex = ctx.exercise
    assert registry.register("OrderPlaced", ex.ORDER_PLACED_V1, mode="NONE") == 1
    assert registry.register("OrderPlaced", ex.ORDER_PLACED_V2, mode="NONE") == 2
    stream = ctx.key("orders")
    events, cents = [], 0
    for n in range(40):
        amount = ctx.rng.randint(100, 99_999)
        cents += amount
        if ctx.rng.random() < 0.5:
            data: dict[str, Any] = {"order": f"o-{n}", "customer": "c", "amount": amount / 100}
            version = 1
        else:
            data = {"order": f"o-{n}", "customer": "c", "amount_cents": amount, "currency": "EUR"}
            version = 2
        events.append(
            Event(type="OrderPlaced", source="orders", data=data,
                  dataschema=format_uri("OrderPlaced", version))
        )  # fmt: skip
    delivered = faults.duplicate_burst(events, fraction=0.25, seed=ctx.seed)
    delivered = faults.out_of_order(delivered, window=5, seed=ctx.seed + 1)
    kit.publish_all(client, stream, delivered)
    read = [event for _, event in streams.replay(client, stream)]
    assert len(read) > len(events), "the fault schedule delivered no duplicate"
    return registry, read, cents


def _read_once(events: list[Event], convert: Any, what: str) -> dict[str, dict[str, Any]]:
    """A consumer's view: each event id converted once; every copy must convert the same."""
    view: dict[str, dict[str, Any]] = {}
    for event in events:
        data = convert(event)
        if event.id in view:
            assert view[event.id] == data, (
                f"{what} gave {data} for a redelivered copy of an event it first turned into "
                f"{view[event.id]} (keep it pure: no state kept between calls, no randomness)"
            )
        else:
            view[event.id] = data
    return view


@check(points=3, hint="amount_cents = round(amount * 100); currency 'EUR'; keep order, customer")
def new_consumer_reads_old_events(ctx: CheckContext) -> None:
    """A v2 consumer reads every event of a mixed v1/v2 stream through the upcaster."""
    registry, events, cents = _stream(ctx)
    registry.add_upcaster("OrderPlaced", 1, ctx.exercise.upcast_v1)
    view = _read_once(events, lambda e: registry.upcast(e, to=2).data, "upcast_v1")
    total = sum(data["amount_cents"] for data in view.values())
    assert total == cents, f"v2 consumer's total is {total} cents, expected {cents}"


@check(points=2, hint="amount = amount_cents / 100; drop currency (v1 is closed)")
def old_consumer_reads_new_events(ctx: CheckContext) -> None:
    """A v1 consumer, not yet upgraded, reads every event through the downcaster."""
    registry, events, cents = _stream(ctx)

    def as_v1(event: Event) -> dict[str, Any]:
        if event.dataschema == format_uri("OrderPlaced", 2):
            data = ctx.exercise.downcast_v2(dict(event.data))
            event = event.evolve(data=data, dataschema=format_uri("OrderPlaced", 1))
        return dict(registry.validate(event).data)

    view = _read_once(events, as_v1, "downcast_v2")
    total = sum(data["amount"] for data in view.values())
    assert abs(total - cents / 100) < 0.01, (
        f"v1 consumer's total is {total:.2f}, expected {cents / 100:.2f}"
    )


@check(
    points=2, hint="round, never truncate: cents are exact, dollars only look exact", stretch=True
)
def round_trip_is_lossless(ctx: CheckContext) -> None:
    """Stretch: for 500 amounts in whole cents, downcast(upcast(v1)) gives v1 back exactly."""
    wrong = []
    for number in range(500):
        amount = ctx.rng.randint(1, 9_999_999) / 100
        v1 = {"order": f"o-{number}", "customer": "c", "amount": amount}
        back = ctx.exercise.downcast_v2(ctx.exercise.upcast_v1(dict(v1)))
        if back != v1:
            wrong.append((amount, back.get("amount")))
    assert not wrong, f"{len(wrong)} of 500 amounts changed on the way, e.g. {wrong[:3]}"
