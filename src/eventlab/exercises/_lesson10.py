"""Lesson 10's try-it check: follow causation ids from an event back to the customer.

The learner's ``causal_chain(events, event)`` returns the types of the events
that led to ``event``, oldest first. The check runs it on the shop's real log for
every event of one confirmed order (placing and running one if the log has none)
and compares with the chain of causation ids.
"""

from __future__ import annotations

from typing import Any

from eventlab import shop, streams
from eventlab.course import Lesson
from eventlab.envelope import Event
from eventlab.exercises import _shop, exercise


def _chain(by_id: dict[str, Event], event: Event) -> list[str]:
    chain = [event]
    while chain[-1].causationid in by_id:
        chain.append(by_id[chain[-1].causationid])
    return [e.type for e in reversed(chain)]


@exercise(
    "10-causal-chain",
    title="each event's chain of causes, from the customer's order to it",
    hints=(
        (
            "index the events by id, then from `event` follow causationid to its parent, and "
            "the parent's causationid to its parent, until there is none; return the types, "
            "oldest first"
        ),
        "the correlation id gives the whole story; the causation id gives one parent",
    ),
)
def causal_chain(answer: Any, lesson: Lesson) -> str | None:
    """Compare ``answer`` with the causation chain of every event of one confirmed order."""
    log = [e for _, e in streams.replay(lesson.client, shop.stream())]
    if not any(e.type == "OrderConfirmed" for e in log):
        order = {"customer": "try-10", "items": [{"sku": "plum", "qty": 1}], "total": 100}
        _shop.place(lesson, [order], exercise="10")
        _shop.run(lesson)
        log = [e for _, e in streams.replay(lesson.client, shop.stream())]
    by_id = {e.id: e for e in log}
    confirmed = next(e for e in log if e.type == "OrderConfirmed")
    story = [e for e in log if e.correlationid == confirmed.correlationid]
    for event in story:
        want = _chain(by_id, event)
        got = answer(list(log), event)  # a blank raises here
        if got is None or list(got) == want:
            if got is None:
                return "causal_chain returned None: return the list of event types"
            continue
        got = list(got)
        if len(got) == len(story) and want != got:
            return (
                f"for {event.type} you returned all {len(got)} events of the order (that is its "
                "correlation id); follow causationid, one parent at a time"
            )
        if got == want[::-1]:
            return f"for {event.type} your chain is reversed: start from the customer's event"
        return f"for {event.type} you returned {got}, the causation ids give {want}"
    return None
