"""Lab 03, a plausible first attempt: effect then ack, but no dedupe (2 of 8)."""

from __future__ import annotations

import redis

from eventlab.envelope import Event


def balances_key(stream: str) -> str:
    return f"{stream}:balances"


def processed_key(stream: str, group: str) -> str:
    return f"{stream}:processed:{group}"


def handle(client: redis.Redis, stream: str, group: str, entry_id: str, event: Event) -> None:
    client.hincrby(balances_key(stream), event.data["account"], int(event.data["amount"]))
    client.xack(stream, group, entry_id)
