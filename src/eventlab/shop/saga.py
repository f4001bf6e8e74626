"""The orchestrated saga's timer: a step that got no reply in time becomes a ``StepTimedOut`` event.

The orchestrator (the orders service) arms a deadline per step in a sorted set
under its own prefix. :func:`fire_timeouts` turns every expired deadline into a
``StepTimedOut`` event on the log *before* removing it, so a crash in between
only repeats the event — and the orchestrator acts on a timeout only while the
step is still pending, so a repeat (or a late reply racing it) changes nothing.
The timeout goes through the log like any other event: the decision stays a
fold over events, and a replay reproduces it.

Introduced in lesson 07.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import redis.asyncio

from eventlab import schema
from eventlab.envelope import Event
from eventlab.shop import events

__all__ = ["fire_timeouts", "pending_deadlines", "run_timer"]


def _deadlines() -> str:
    return events.key("orders", "deadlines")


async def pending_deadlines(client: redis.asyncio.Redis) -> dict[str, float]:
    """Return ``"<order id>|<step>" → deadline`` (epoch seconds) of every armed step."""
    rows: Any = await client.zrange(_deadlines(), 0, -1, withscores=True)
    return {str(member): float(score) for member, score in rows}


async def fire_timeouts(
    client: redis.asyncio.Redis, registry: schema.Registry, *, now: float | None = None
) -> list[Event]:
    """Publish ``StepTimedOut`` for every deadline before ``now`` (epoch seconds); return them."""
    moment = time.time() if now is None else now
    due: Any = await client.zrangebyscore(_deadlines(), "-inf", moment, start=0, num=500)
    fired: list[Event] = []
    version = registry.latest("StepTimedOut") or 1
    for member in due:
        order_id, _, step = str(member).rpartition("|")
        event = Event(
            type="StepTimedOut",
            source="orders",
            subject=order_id,
            data={"order_id": order_id, "step": step},
            dataschema=schema.format_uri("StepTimedOut", version),
        )
        # publish first, then disarm: a crash in between repeats the timeout, never loses it
        await client.xadd(events.stream(), event.to_fields())  # type: ignore[arg-type]
        await client.zrem(_deadlines(), member)
        fired.append(event)
    return fired


async def run_timer(
    client: redis.asyncio.Redis,
    registry: schema.Registry,
    *,
    interval: float = 0.1,
    until: asyncio.Event | None = None,
) -> None:
    """Call :func:`fire_timeouts` every ``interval`` seconds until ``until`` is set."""
    done = until or asyncio.Event()
    while not done.is_set():
        await fire_timeouts(client, registry)
        try:
            await asyncio.wait_for(done.wait(), timeout=interval)
        except TimeoutError:
            continue
