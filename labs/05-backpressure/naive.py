"""A producer that caps the stream and never waits for its consumers.

Not graded and not an answer: the notebook runs it to show the failure this lab
is about (events trimmed before the group read them). Your work is in
``exercise.py``.
"""

from __future__ import annotations

from collections.abc import Iterable

import redis

from eventlab.envelope import Event


def produce(client: redis.Redis, stream: str, events: Iterable[Event], *, maxlen: int) -> int:
    """Publish every event with ``MAXLEN ~ maxlen``, as fast as the broker takes them."""
    published = 0
    for event in events:
        client.xadd(stream, event.to_fields(), maxlen=maxlen, approximate=True)  # type: ignore[arg-type]
        published += 1
    return published
