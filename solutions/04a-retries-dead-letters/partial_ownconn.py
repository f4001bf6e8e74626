"""Lab 04a, non-atomic on its own connection: dead letter, then ack, two commands (10 of 12).

Retries and dead-letters the right entries with every field, but XADDs the
dead letter and XACKs the entry in two round trips: a consumer killed between
them leaves the entry pending, and its redelivery is dead-lettered a second
time. It opens its own connection for it; the fault proxy crashes that one too.
"""

# ruff: noqa: ARG001
from __future__ import annotations

import os

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
    own = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    own.xadd(dlq_key(stream), dead)
    own.xack(stream, group, entry_id)  # a second round trip, on its own connection
    own.close()
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
