"""Lab 03, a tempting non-atomic attempt: dedupe, effect and ack as four commands (6 of 8).

Deduplicates correctly and acks, but a crash between SADD and HINCRBY marks
the event processed without its effect: the redelivered event is skipped and
the credit is lost. The atomicity check must catch this under every seed.
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
        client.sadd(processed, event.id)
        client.hincrby(balances_key(stream), event.data["account"], int(event.data["amount"]))
    client.xack(stream, group, entry_id)
