"""Message faults: duplicates, reordering, poison and schema-invalid events.

Part of :mod:`eventlab.faults`; import from there.

Introduced in lesson 04 (poison events).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Literal

import redis

from eventlab.envelope import Event
from eventlab.faults._common import FaultError
from eventlab.history import History

# -- message faults -------------------------------------------------------------------


def duplicate_burst(
    events: Sequence[Event], *, fraction: float = 0.2, copies: int = 1, seed: int = 0
) -> list[Event]:
    """Return ``events`` with a seeded ``fraction`` of them repeated ``copies`` more times.

    The repeats keep the same event id, as a producer retry or an at-least-once
    relay makes them; each repeat lands right after its original or a few later.
    """
    if not 0 <= fraction <= 1:
        raise FaultError("fraction must be between 0 and 1", fix="pass e.g. fraction=0.2")
    rng = random.Random(seed)  # noqa: S311 - seeded faults, not cryptography
    out: list[Event] = []
    for event in events:
        out.append(event)
        if rng.random() < fraction:
            out.extend([event] * copies)
    return out


def out_of_order(events: Sequence[Event], *, window: int = 5, seed: int = 0) -> list[Event]:
    """Return ``events`` shuffled within windows of ``window`` (seeded): delayed delivery.

    Simulates retries, parallel producers or two consumers racing: events about
    one aggregate arrive in another order than they happened.
    """
    if window < 1:
        raise FaultError("window must be at least 1", fix="pass window=5")
    rng = random.Random(seed)  # noqa: S311 - seeded faults, not cryptography
    out: list[Event] = []
    for i in range(0, len(events), window):
        chunk = list(events[i : i + window])
        rng.shuffle(chunk)
        out.extend(chunk)
    return out


def poison_event(*, source: str = "nemesis", subject: str | None = None) -> Event:
    """Return a well-formed event that a handler can never process (``data.poison`` is true).

    Simulates a message that crashes its consumer every time (a bug, an
    impossible value): without a delivery limit it is retried forever.
    """
    return Event(type="Poison", source=source, subject=subject, data={"poison": True})


def invalid_fields(
    *, kind: Literal["not-json", "missing-type", "bad-time"] = "not-json"
) -> dict[str, str]:
    """Return raw stream fields that break the wire format in one named way."""
    fields = Event(type="Invalid", source="nemesis", data={"n": 1}).to_fields()
    if kind == "not-json":
        fields["data"] = "{not json"
    elif kind == "missing-type":
        del fields["type"]
    elif kind == "bad-time":
        fields["time"] = "yesterday"
    else:
        raise FaultError(
            f"unknown invalid kind {kind!r}", fix="use not-json, missing-type, bad-time"
        )
    return fields


def publish_invalid(
    client: redis.Redis,
    stream: str,
    *,
    kind: Literal["not-json", "missing-type", "bad-time"] = "not-json",
    history: History | None = None,
) -> str:
    """XADD a schema-invalid entry to ``stream`` (a producer with a bug); return its entry id."""
    entry = str(client.xadd(stream, invalid_fields(kind=kind)))  # type: ignore[arg-type]
    if history is not None:
        history.nemesis("schema-invalid", "start", entry=entry, kind=kind)
        history.nemesis("schema-invalid", "stop")
    return entry
