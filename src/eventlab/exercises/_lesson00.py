"""Lesson 00's try-it check: publish your first event."""

from __future__ import annotations

from typing import Any

from eventlab import streams
from eventlab.course import Lesson
from eventlab.exercises import exercise, fresh_key


@exercise(
    "00-first-event",
    title="one HelloSaid event with your name, read back from the broker",
    hints=(
        (
            "build Event(type='HelloSaid', source='setup-check', data={'name': 'your name'}) and "
            "give it to streams.publish(client, stream, event)"
        ),
        "streams.publish returns the entry id the broker chose: return it",
    ),
)
def first_event(answer: Any, lesson: Lesson) -> str | None:
    """Call ``answer(client, stream)``; exactly one ``HelloSaid`` with a name, its id returned."""
    stream = fresh_key(lesson, "try-hello")
    returned = answer(lesson.client, stream)
    log = streams.replay(lesson.client, stream)
    if len(log) != 1:
        return f"the stream has {len(log)} entries: publish exactly one event"
    entry_id, event = log[0]
    if event.type != "HelloSaid":
        return f"the event's type is {event.type!r}: use type='HelloSaid' (a fact, past tense)"
    name = event.data.get("name") if isinstance(event.data, dict) else None
    if not isinstance(name, str) or not name.strip():
        return "the event's data has no 'name': use data={'name': 'Ada'} (your name)"
    if returned != entry_id:
        return f"you returned {returned!r}, the entry id is {entry_id!r}: return what publish gives"
    return None
