"""Lab 04a, non-atomic the other way round: ack first, then the dead letter (10 of 12).

Retries and dead-letters the right entries with every field, but XACKs the
entry and then XADDs its dead letter in two round trips: a consumer killed
between them has acknowledged an entry whose dead letter was never written —
the event is lost. The sweep of crash positions catches this order too.
"""

from __future__ import annotations

import redis

from eventlab.streams import dlq_key

MAX_DELIVERIES = 3
DEAD_LETTER_FIELDS = ("reason", "error", "deliveries", "original_id", "group")


class TransientError(Exception):
    pass


def on_failure(client, stream, group, entry_id, fields, *, error, deliveries) -> str:
    if isinstance(error, TransientError) and deliveries < MAX_DELIVERIES:
        return "retry"
    dead = {
        **fields,
        "reason": f"failed after {deliveries} deliveries: {error}",
        "error": type(error).__name__,
        "deliveries": str(deliveries),
        "original_id": entry_id,
        "group": group,
    }
    client.xack(stream, group, entry_id)
    client.xadd(dlq_key(stream), dead)  # a second round trip: the crash window
    return "dead"


def redrive(client: redis.Redis, stream: str, *, original_ids=None) -> int:
    moved = 0
    for dead_id, fields in client.xrange(dlq_key(stream)):
        if original_ids is not None and fields.get("original_id") not in original_ids:
            continue
        original = {k: v for k, v in fields.items() if k not in DEAD_LETTER_FIELDS}
        pipe = client.pipeline(transaction=True)
        pipe.xadd(stream, original)
        pipe.xdel(dlq_key(stream), dead_id)
        pipe.execute()
        moved += 1
    return moved
