"""The orchestrated saga's timer: a step that got no reply in time becomes a ``StepTimedOut`` event.

The orchestrator (the orders service) arms a deadline per step in a sorted set
under its own prefix. :func:`fire_timeouts` turns every expired deadline into a
``StepTimedOut`` event on the log and removes it in one Lua call (validated
against the registry and carrying the orders aggregate's next ``seq``, like every
event the orders service emits) — and the orchestrator acts on a timeout only
while the step is still pending, so a deadline armed again (or a late reply
racing it) changes nothing.
The timeout goes through the log like any other event: the decision stays a
fold over events, and a replay reproduces it.

Introduced in lesson 07.
"""

from __future__ import annotations

import asyncio
import json
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


_dumps = json.JSONEncoder(separators=(",", ":")).encode

# KEYS: 1 the orders service's state of the order, 2 the stream, 3 the deadlines.
# ARGV: expected state, new state, deadline member, then the event's field/value pairs.
_FIRE = """
if (redis.call('GET', KEYS[1]) or '') ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
redis.call('XADD', KEYS[2], '*', unpack(ARGV, 4))
redis.call('ZREM', KEYS[3], ARGV[3])
return 1
"""


async def fire_timeouts(
    client: redis.asyncio.Redis, registry: schema.Registry, *, now: float | None = None
) -> list[Event]:
    """Publish ``StepTimedOut`` for every deadline before ``now`` (epoch seconds); return them.

    Each timeout is validated against the registry like every other event, and
    carries the next ``seq`` of the orders service's aggregate (the timer speaks for
    the orchestrator): the version bump, the XADD and the disarm happen in one Lua
    call that first checks the order's state did not change meanwhile (else it
    reads again), so projections see no gap and no version twice.

    Raises:
        eventlab.schema.SchemaError: The registry refuses the event (``StepTimedOut``
            not registered, or its schema changed incompatibly).
    """
    moment = time.time() if now is None else now
    due: Any = await client.zrangebyscore(_deadlines(), "-inf", moment, start=0, num=500)
    fired: list[Event] = []
    version = registry.latest("StepTimedOut") or 1
    script = client.register_script(_FIRE)
    for member in due:
        order_id, _, step = str(member).rpartition("|")
        event = registry.validate(
            Event(
                type="StepTimedOut",
                source="orders",
                subject=order_id,
                data={"order_id": order_id, "step": step},
                dataschema=schema.format_uri("StepTimedOut", version),
            )
        )
        key = events.key("orders", "order", order_id)
        while True:  # the orders service may write the order meanwhile: then read again
            raw = await client.get(key)
            state: dict[str, Any] = json.loads(raw) if raw else {"seen": [], "seq": 0}
            state["seq"] = int(state.get("seq", 0)) + 1
            stamped = event.evolve(extensions={**event.extensions, "seq": str(state["seq"])})
            argv: list[Any] = [raw or "", _dumps(state), member]
            for name, value in stamped.to_fields().items():
                argv += [name, value]
            if int(await script(keys=[key, events.stream(), _deadlines()], args=argv)):
                break
        fired.append(stamped)
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
