"""Billing's consumer as first written: one order at a time.

Not graded and not an answer: the notebook runs it to show the failure this
lab is about (a consumer that cannot keep up, and a p99 in seconds). Your work
is in ``exercise.py``.
"""

from __future__ import annotations

from typing import Any

import redis

from eventlab.envelope import Event
from eventlab.tracing import Gateway


def billing_step(client: redis.Redis, inbox: str, outbox: str, group: str, gateway: Gateway) -> int:
    """Read one order, charge it, emit its result, ack it."""
    reply: Any = client.xreadgroup(group, group, {inbox: ">"}, count=1)
    for _, batch in reply or []:
        for entry_id, fields in batch:
            event = Event.from_fields(fields)
            accepted = gateway.call([event.data["order"]])[event.data["order"]]
            kind = "PaymentCaptured" if accepted else "PaymentDeclined"
            client.xadd(
                outbox, event.follow(type=kind, source="billing", data=event.data).to_fields()
            )  # type: ignore[arg-type]
            client.xack(inbox, group, entry_id)
            return 1
    return 0
