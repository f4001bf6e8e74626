"""Lab 03, non-atomic the other way round: effect first, then mark processed and ack (< 8).

Applies the credit, then marks the event processed, then acks, as three
commands: a crash after the effect and before the mark applies the credit a
second time on redelivery. The sweep of crash positions catches this order too.
"""

from __future__ import annotations

import redis

from eventlab.envelope import Event


def balances_key(stream: str) -> str:
    return f"{stream}:balances"


def processed_key(stream: str, group: str) -> str:
    return f"{stream}:processed:{group}"


def handle(client: redis.Redis, stream: str, group: str, entry_id: str, event: Event) -> None:
    processed = processed_key(stream, group)
    if not client.sismember(processed, event.id):
        client.hincrby(balances_key(stream), event.data["account"], int(event.data["amount"]))
        client.sadd(processed, event.id)
    client.xack(stream, group, entry_id)
