"""Lab 04b — crash recovery with a reclaimer.

A consumer that reads a batch and is killed before acking leaves its entries
in the group's pending list, owned by a consumer that will never come back (a
restarted faststream consumer reads only new entries, ``>``). Write the
reclaimer that runs beside the normal reader in a live consumer: it takes over
entries idle for at least ``min_idle`` seconds with ``XAUTOCLAIM`` and hands
them to the handler, without stealing entries a live consumer is still
working on.
"""

from __future__ import annotations

from collections.abc import Callable

import redis


def reclaim(
    client: redis.Redis,
    stream: str,
    group: str,
    consumer: str,
    *,
    min_idle: float,
    handle: Callable[[str, dict[str, str]], None],
    count: int = 100,
) -> int:
    """Claim every entry of ``group`` idle at least ``min_idle`` seconds; return how many.

    Use ``client.xautoclaim(stream, group, consumer, min_idle_time=<ms>,
    start_id=cursor, count=count)``; its reply is ``[next_cursor, entries,
    deleted_ids]``. Follow the cursor until it comes back as ``"0-0"`` (one call
    returns at most ``count`` entries). Call ``handle(entry_id, fields)`` for
    each claimed entry (it applies the effect and acks) and count them.
    """
    raise NotImplementedError
