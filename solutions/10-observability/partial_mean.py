"""The hot spot by mean handling time (waiting ignored): fooled by a slow-but-batched service."""

from __future__ import annotations

import pandas as pd
import redis

from eventlab.envelope import Event
from eventlab.tracing import Gateway

TARGET = 0.150


def hot_spot(trace: pd.DataFrame) -> str:
    handling = (trace["handled"] - trace["received"]).dt.total_seconds()
    return str(handling.groupby(trace["group"]).mean().idxmax())


def billing_step(client: redis.Redis, inbox: str, outbox: str, group: str, gateway: Gateway) -> int:
    reply = client.xreadgroup(group, group, {inbox: ">"}, count=gateway.max_batch)
    entries = [(entry_id, fields) for _, batch in reply or [] for entry_id, fields in batch]
    if not entries:
        return 0
    events = [Event.from_fields(fields) for _, fields in entries]
    accepted = gateway.call([event.data["order"] for event in events])
    pipe = client.pipeline(transaction=True)
    for (entry_id, _), event in zip(entries, events, strict=True):
        kind = "PaymentCaptured" if accepted[event.data["order"]] else "PaymentDeclined"
        pipe.xadd(outbox, event.follow(type=kind, source="billing", data=event.data).to_fields())
        pipe.xack(inbox, group, entry_id)
    pipe.execute()
    return len(entries)
