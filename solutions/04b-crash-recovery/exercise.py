"""Lab 04b — crash recovery with a reclaimer.

A consumer that reads a batch and is killed before acking leaves its entries
in the group's pending list, owned by a consumer that will never come back (a
restarted faststream consumer reads only new entries, ``>``). Write the
reclaimer that runs beside the normal reader in a live consumer: it takes over
entries that have waited too long and hands them to the handler, without
stealing entries a live consumer is still working on. The notebook's hints
(idea, commands, skeleton) are there if you want them.
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
    """Take over every entry of ``group`` idle at least ``min_idle`` seconds; return how many.

    Idle means: delivered to some consumer of ``group`` and neither acked nor
    re-delivered for ``min_idle`` seconds or more. Every such entry present when
    the call starts is made ``consumer``'s and passed to ``handle(entry_id,
    fields)`` exactly once by this call (``handle`` applies the effect and
    acks); the return value counts them.

    Guarantees:

    * **one call is enough** — however many entries are stranded (hundreds,
      more than any single reply of the broker holds), this call takes them all;
    * **never robs a live consumer** — an entry idle less than ``min_idle`` is
      left with its owner and not handled;
    * **terminates** — it returns once it has been through the pending list,
      also when nothing is idle (returns 0).

    Failure: a broker error or an exception from ``handle`` propagates; entries
    not yet handled stay pending for the next call.
    """
    # BEGIN SOLUTION
    cursor = "0-0"
    handled = 0
    while True:
        reply = client.xautoclaim(
            stream,
            group,
            consumer,
            min_idle_time=int(min_idle * 1000),
            start_id=cursor,
            count=count,
        )
        cursor = reply[0]
        for entry_id, fields in reply[1]:
            handle(entry_id, fields)
            handled += 1
        if cursor == "0-0":
            return handled
    # END SOLUTION
