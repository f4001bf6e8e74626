"""Lesson 05's try-it check: a producer policy that keeps a group's lag under a bound."""

from __future__ import annotations

from typing import Any

from eventlab import backpressure, streams
from eventlab.course import Lesson
from eventlab.envelope import Event
from eventlab.exercises import exercise, fresh_key

_TOTAL = 200  # events the producer must send
_WANTED = 10  # it would like to send this many per tick
_READS = 5  # the consumer handles this many per tick
_TICKS = 100  # the consumer alone needs 40
_BOUND = 40  # lag the group must stay under


@exercise(
    "05-lag-bound",
    title=f"all {_TOTAL} events sent in {_TICKS} ticks, lag never above {_BOUND}",
    hints=(
        (
            "return how many of the `wanted` events to send now: all of them while lag is "
            f"low, fewer as it nears {_BOUND}, none above it"
        ),
        f"max(0, min(wanted, {_BOUND} - 10 - lag)) leaves room for one tick's events",
    ),
)
def lag_bound(answer: Any, lesson: Lesson) -> str | None:
    """Tick by tick: ask ``answer(lag, wanted)``, publish that many; the consumer reads 5."""
    client = lesson.client
    stream = fresh_key(lesson, "try-throttle")
    streams.create_group(client, stream, "shipping", start="0")
    sent, peak = 0, 0
    for tick in range(_TICKS):
        lag = backpressure.group_load(client, stream, "shipping").lag or 0
        peak = max(peak, lag)
        if peak > _BOUND:
            return (
                f"lag reached {peak} at tick {tick} (bound {_BOUND}): send fewer events "
                "while the group is behind"
            )
        wanted = min(_WANTED, _TOTAL - sent)
        count = answer(lag, wanted) if wanted else 0
        if not isinstance(count, int) or not 0 <= count <= wanted:
            return f"how_many({lag}, {wanted}) returned {count!r}: return a whole number 0..wanted"
        if count:
            batch = [Event(type="OrderPlaced", source="orders") for _ in range(count)]
            streams.publish_many(client, stream, batch)
            sent += count
        reply: Any = client.xreadgroup("shipping", "s1", {stream: ">"}, count=_READS)
        done = [entry_id for entry_id, _ in reply[0][1]] if reply else []
        if done:
            client.xack(stream, "shipping", *done)
    if sent < _TOTAL:
        return (
            f"only {sent} of {_TOTAL} events were sent in {_TICKS} ticks: you hold back even "
            "when the group has caught up"
        )
    return None
