"""Lesson 02's try-it check: read a batch in a group, apply each entry, acknowledge after it."""

from __future__ import annotations

import contextlib
from typing import Any

from eventlab import streams
from eventlab.course import Lesson
from eventlab.envelope import Event
from eventlab.exercises import SimulatedCrash, exercise, fresh_key


def _deposits(n: int) -> list[Event]:
    return [
        Event(type="Deposited", source="accounts", subject=f"acct-{i}", data={"amount": 10})
        for i in range(n)
    ]


@exercise(
    "02-ack-after-effect",
    title="each entry applied once and acknowledged only after its effect",
    hints=(
        (
            "client.xreadgroup(group, consumer, {stream: '>'}, count=10) returns "
            "[[stream, [(entry_id, fields), …]]] (or [] when there is nothing new); "
            "Event.from_fields(fields) decodes one"
        ),
        (
            "for each entry: apply(event) first, then client.xack(stream, group, entry_id) — if "
            "apply raises, the XACK must not happen"
        ),
    ),
)
def ack_after_effect(answer: Any, lesson: Lesson) -> str | None:
    """Run ``answer`` on 5 entries, then on 6 where the 4th effect crashes."""
    client = lesson.client
    stream = fresh_key(lesson, "try-ack")
    streams.publish_many(client, stream, _deposits(5))
    streams.create_group(client, stream, "billing", start="0")
    applied: list[str] = []
    handled = answer(client, stream, "billing", "billing-1", lambda e: applied.append(e.subject))
    pending = streams.pending_summary(client, stream, "billing").count
    if not applied:
        return "apply() was never called: read with XREADGROUP billing billing-1 {stream: '>'}"
    if len(applied) != 5:  # noqa: PLR2004 - five entries published
        return f"apply() ran {len(applied)} times for 5 entries: call it once per entry"
    if pending:
        return f"{pending} of 5 entries are still pending: XACK each entry after apply()"
    if handled != 5:  # noqa: PLR2004 - five entries published
        return f"you returned {handled!r}: return how many entries you handled (5)"
    return _crash(answer, lesson)


def _crash(answer: Any, lesson: Lesson) -> str | None:
    client = lesson.client
    stream = fresh_key(lesson, "try-ack-crash")
    ids = streams.publish_many(client, stream, _deposits(6))
    streams.create_group(client, stream, "billing", start="0")
    applied: list[str] = []

    def apply(event: Event) -> None:
        if len(applied) == 3:  # noqa: PLR2004 - the fourth effect fails
            raise SimulatedCrash("the 4th effect failed")
        applied.append(event.subject or "")

    with contextlib.suppress(SimulatedCrash):  # it died with its batch: what did it ack?
        answer(client, stream, "billing", "billing-1", apply)
    held = {row["message_id"] for row in client.xpending_range(stream, "billing", "-", "+", 100)}
    if ids[3] not in held:
        return (
            "the 4th entry's effect failed but the entry was acknowledged: XACK after the "
            "effect, never before (its event is now lost)"
        )
    if held & set(ids[:3]):
        return "entries whose effect succeeded are still pending: XACK each right after apply()"
    return None
