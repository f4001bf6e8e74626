"""Lesson 01's try-it check: a fold that turns an order's events into its state."""

from __future__ import annotations

from typing import Any

from eventlab import streams
from eventlab.course import Lesson
from eventlab.envelope import Event
from eventlab.exercises import exercise, fresh_key

_FACTS: list[tuple[str, str, dict[str, Any]]] = [
    ("OrderPlaced", "order-1", {"items": 3, "total": 30.0}),
    ("OrderPlaced", "order-2", {"items": 1, "total": 12.5}),
    ("ItemAdded", "order-1", {"items": 2, "total": 20.0}),
    ("ItemRemoved", "order-2", {"items": -1, "total": -12.5}),
    ("ItemRemoved", "order-1", {"items": -1, "total": -10.0}),
    ("OrderCancelled", "order-2", {"reason": "changed mind"}),
]
_EXPECTED = {
    "order-1": {"items": 4, "total": 40.0, "status": "placed"},
    "order-2": {"items": 0, "total": 0.0, "status": "cancelled"},
}


def _difference(got: Any, order: str, want: dict[str, Any]) -> str | None:
    if not isinstance(got, dict):
        return f"{order} is {got!r}: give each order a dict with items, total and status"
    for field, expected in want.items():
        value = got.get(field)
        if field == "total" and isinstance(value, int | float):
            value = round(float(value), 2)
        if value != expected:
            return f"{order} has {field}={value!r}, its events add up to {expected!r}"
    return None


@exercise(
    "01-fold",
    title="the fold gives every order's items, total and status from its events",
    hints=(
        (
            "start from {} and, oldest event first, update state[event.subject]: OrderPlaced "
            "creates {'items': …, 'total': …, 'status': 'placed'}, ItemAdded/ItemRemoved add "
            "their (signed) items and total"
        ),
        "OrderCancelled carries no items: it only sets status to 'cancelled'",
    ),
)
def fold_orders(answer: Any, lesson: Lesson) -> str | None:
    """Publish six facts about two orders, replay them, fold them with ``answer``; compare."""
    stream = fresh_key(lesson, "try-fold")
    events = [Event(type=t, source="orders", subject=s, data=d) for t, s, d in _FACTS]
    streams.publish_many(lesson.client, stream, events)
    replayed = [event for _, event in streams.replay(lesson.client, stream)]
    state = answer(replayed)
    if not isinstance(state, dict):
        return f"fold returned {type(state).__name__}: return a dict of order id -> state"
    missing = sorted(set(_EXPECTED) - set(state))
    if missing:
        return f"{missing[0]} is missing: every subject with an OrderPlaced gets an entry"
    cancelled = state["order-2"]
    if isinstance(cancelled, dict) and cancelled.get("status") == "placed":
        return "order-2 is still 'placed': OrderCancelled must set its status to 'cancelled'"
    for order, want in _EXPECTED.items():
        problem = _difference(state[order], order, want)
        if problem:
            return problem
    if set(state) != set(_EXPECTED):
        return f"the state has extra keys {sorted(set(state) - set(_EXPECTED))}: one per order"
    return None
