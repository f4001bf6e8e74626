"""Lab 05 — backpressure: a producer that keeps lag bounded without losing events.

The stream is capped with ``XADD … MAXLEN ~ maxlen`` so it cannot eat the
broker's memory. But a producer faster than its consumer group then trims
entries the group has not read yet: they are lost by retention, silently.
Write a producer that watches the group's lag and waits while it is too high,
so the cap only ever trims entries that were already read.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import redis

from eventlab.envelope import Event


def group_lag(client: redis.Redis, stream: str, group: str) -> int:
    """Return how many entries of ``stream`` the group has not read yet.

    ``XINFO GROUPS`` (``client.xinfo_groups(stream)``) reports ``lag`` per group
    on Redis 7+; it is ``None`` when the server cannot tell (after some
    deletions). Then count the entries after the group's ``last-delivered-id``
    with ``XRANGE`` (``"(" + id`` is an exclusive start).
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
    """Publish every event with ``MAXLEN ~ maxlen``, never letting the lag reach ``max_lag``.

    Before each XADD, while ``group_lag(...) >= max_lag``, sleep ``poll``
    seconds. Publish with ``client.xadd(stream, event.to_fields(),
    maxlen=maxlen, approximate=True)``. Return how many events were published.
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
