"""Lab 05 — backpressure: a producer that keeps lag bounded without losing events.

The stream is capped (about ``maxlen`` entries, the oldest trimmed first) so
it cannot eat the broker's memory. But a producer faster than its consumer
group then trims entries the group has not read yet: they are lost by
retention, silently. Write a producer that keeps the group's lag bounded, so
the cap only ever trims entries that were already read. The notebook's hints
(idea, commands, skeleton) are there if you want them.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import redis

from eventlab.envelope import Event


def group_lag(client: redis.Redis, stream: str, group: str) -> int:
    """Return how many entries of ``stream`` the consumer group ``group`` has not read yet.

    Entries added after the last one delivered to the group (to any of its
    consumers); 0 when it has read everything. Exact, also on a stream whose
    entries were deleted or trimmed (where the broker's own counter may be
    unknown). Read-only: it changes nothing.

    Raises:
        ValueError: ``stream`` has no group ``group``.
    """
    # BEGIN SOLUTION
    for info in client.xinfo_groups(stream):
        if info["name"] != group:
            continue
        if info.get("lag") is not None:
            return int(info["lag"])
        return len(client.xrange(stream, "(" + str(info["last-delivered-id"]), "+"))
    raise ValueError(f"no group {group!r} on {stream}")
    # END SOLUTION


def produce(
    client: redis.Redis,
    stream: str,
    group: str,
    events: Iterable[Event],
    *,
    max_lag: int,
    maxlen: int,
    poll: float = 0.002,
) -> int:
    """Publish every event of ``events`` to ``stream`` in order; return how many were published.

    Guarantees, while a consumer group ``group`` reads the stream at its own pace:

    * **capped** — the stream never holds much more than ``maxlen`` entries
      (approximate trimming is fine: a little over is allowed);
    * **bounded lag** — an event is published only while the group's lag
      (:func:`group_lag`) is below ``max_lag``; otherwise the producer waits,
      checking again every ``poll`` seconds, however long the consumer takes;
    * **nothing lost** — as a consequence, trimming only ever drops entries
      the group has already read.

    Each event is published as ``event.to_fields()``. Failure: a broker error
    propagates; events after it are not published.
    """
    # BEGIN SOLUTION
    published = 0
    for event in events:
        while group_lag(client, stream, group) >= max_lag:
            time.sleep(poll)
        client.xadd(stream, event.to_fields(), maxlen=maxlen, approximate=True)  # type: ignore[arg-type]
        published += 1
    return published
    # END SOLUTION
