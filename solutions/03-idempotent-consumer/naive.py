"""The handler most people write first: apply the effect, then acknowledge.

Not graded and not an answer: the notebook runs it to show the failure this lab
is about (an event delivered twice is credited twice). Your work is in
``exercise.py``.
"""

from __future__ import annotations

import redis

from eventlab.envelope import Event


def handle(client: redis.Redis, stream: str, group: str, entry_id: str, event: Event) -> None:
    """Credit the amount, then XACK: correct only if every event arrives exactly once."""
    balances = f"{stream}:balances"
    client.hincrby(balances, event.data["account"], int(event.data["amount"]))
    client.xack(stream, group, entry_id)
