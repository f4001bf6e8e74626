"""The dual write most services start with: change the state, then publish.

Not graded and not an answer: the notebook runs the shop storefront's writer of
the same two-step shape as a real process (``eventlab.shop.outbox:naive_writer``)
and kills it between the two writes. Your work is in ``exercise.py``.
"""

from __future__ import annotations

import redis

from eventlab.envelope import Event


def accept(client: redis.Redis, stream: str, order_id: str, event: Event) -> None:
    """Write the state, then XADD the event: a crash in between loses the event."""
    client.hset(f"{stream}:orders-state", order_id, "accepted")
    client.xadd(stream, event.to_fields())  # type: ignore[arg-type]
