"""Batched reads, but one gateway call per order: the hot spot is found, the p99 is not met."""

from __future__ import annotations

import pandas as pd
import redis

from eventlab.envelope import Event
from eventlab.tracing import Gateway

TARGET = 0.150


def hot_spot(trace: pd.DataFrame) -> str:
    spans = trace.groupby("correlationid").agg(start=("emitted", "min"), end=("handled", "max"))
    converge = (spans["end"] - spans["start"]).dt.total_seconds()
    slowest = converge[converge >= converge.quantile(0.99)].index
    tail = trace[trace["correlationid"].isin(slowest)]
    spent = (tail["handled"] - tail["emitted"]).dt.total_seconds().groupby(tail["group"]).sum()
    return str(spent.idxmax())


def billing_step(client: redis.Redis, inbox: str, outbox: str, group: str, gateway: Gateway) -> int:
    reply = client.xreadgroup(group, group, {inbox: ">"}, count=100)
    entries = [(entry_id, fields) for _, batch in reply or [] for entry_id, fields in batch]
    pipe = client.pipeline(transaction=True)
    for entry_id, fields in entries:
        event = Event.from_fields(fields)
        accepted = gateway.call([event.data["order"]])[event.data["order"]]
        kind = "PaymentCaptured" if accepted else "PaymentDeclined"
        pipe.xadd(outbox, event.follow(type=kind, source="billing", data=event.data).to_fields())
        pipe.xack(inbox, group, entry_id)
    pipe.execute()
    return len(entries)
