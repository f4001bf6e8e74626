"""Lab 03, non-atomic on its own connection: dedupe, effect and ack as three commands (< 8).

Opens its own client (from ``REDIS_URL``, as a learner might to "keep the
grader's client clean") and marks the event processed, applies the effect and
acks as separate commands on it. A crash between them loses the effect; the
fault schedule reaches this connection too, so the atomicity check fails.
"""

from __future__ import annotations

import os

import redis

from eventlab.envelope import Event

_OWN: dict[int, redis.Redis] = {}


def balances_key(stream: str) -> str:
    return f"{stream}:balances"


def processed_key(stream: str, group: str) -> str:
    return f"{stream}:processed:{group}"


def _mine() -> redis.Redis:
    pid = os.getpid()
    if pid not in _OWN:
        _OWN[pid] = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    return _OWN[pid]


def handle(client: redis.Redis, stream: str, group: str, entry_id: str, event: Event) -> None:
    own = _mine()  # not the client it was given
    del client
    if own.sadd(processed_key(stream, group), event.id):
        own.hincrby(balances_key(stream), event.data["account"], int(event.data["amount"]))
    own.xack(stream, group, entry_id)
