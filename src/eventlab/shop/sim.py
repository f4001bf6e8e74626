"""Deliver the shop's events to its services one at a time, in a seeded order, with duplicates.

The reliable consumer runtime delivers in log order and redelivers only after a
failure, so the adversarial cases a saga must survive (an event delivered twice,
a service seeing events in another order than they were written, one service far
behind another) are rare there. :func:`deliver` makes them happen on purpose and
repeatably: it calls the *same* service handlers, on the real broker, choosing
the next (service, event) pair at random among those available.

Introduced in lesson 07 (every order ends in exactly one terminal state).
"""

from __future__ import annotations

import random
import time
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

import redis.asyncio

from eventlab import schema, streams
from eventlab.envelope import EnvelopeError, Event
from eventlab.shop import events
from eventlab.shop._service import Service

__all__ = ["Delivery", "deliver"]


@dataclass(frozen=True, slots=True)
class Delivery:
    """What :func:`deliver` did.

    Attributes:
        deliveries: Handler calls made (duplicates included).
        duplicates: Handler calls that repeated an earlier delivery.
        emitted: Events the services emitted.
        dead: Entries dead-lettered (bad envelope or schema), with the reason.
    """

    deliveries: int
    duplicates: int
    emitted: int
    dead: int


async def _dead_letter(
    client: redis.asyncio.Redis,
    stream: str,
    fields: dict[str, str],
    *,
    entry_id: str,
    reason: str,
    group: str,
) -> None:
    letter: dict[Any, Any] = {
        **fields,
        "dlqreason": reason,
        "dlqerror": "SchemaError",
        "dlqattempts": "1",
        "dlqid": entry_id,
        "dlqstream": stream,
        "dlqgroup": group,
        "dlqconsumer": "sim",
        "dlqtime": str(int(time.time() * 1000)),
    }
    await client.xadd(streams.dlq_key(stream), letter)


async def deliver(
    client: redis.asyncio.Redis,
    services: Sequence[Service],
    *,
    seed: int = 0,
    reorder: bool = True,
    duplicates: float = 0.0,
    down: Collection[str] = (),
    max_deliveries: int = 1_000_000,
) -> Delivery:
    """Deliver every event on the shop stream to every service that handles it, until quiet.

    Args:
        client: An asyncio client.
        services: The services to drive (their handlers do the real work).
        seed: Seed of the delivery order and of the duplicates (same seed, same run).
        reorder: Pick the next delivery at random among all available, across
            services and events; ``False`` delivers in log order.
        duplicates: Probability that a delivery is made again later.
        down: Names of services that receive nothing (a service that is down).
        max_deliveries: Stop after this many handler calls.
    """
    rng = random.Random(seed)  # noqa: S311 - a seeded schedule, not secrets
    stream = events.stream()
    cursor = "-"
    pool: list[tuple[Service, str, Event]] = []
    calls = dups = emitted = dead = 0
    live = [s for s in services if s.name not in down]
    while calls < max_deliveries:
        rows: Any = await client.xrange(stream, min=cursor, max="+")
        for entry_id, fields in rows:
            cursor = "(" + entry_id
            try:
                event = Event.from_fields(fields)
            except EnvelopeError as exc:
                dead += 1
                await _dead_letter(
                    client, stream, fields, entry_id=entry_id, reason=str(exc), group="sim"
                )
                continue
            pool.extend((s, entry_id, event) for s in live if event.type in s.handles)
        if not pool:
            break
        index = rng.randrange(len(pool)) if reorder else 0
        service, entry_id, event = pool[index]
        if rng.random() < duplicates:
            dups += 1  # leave it in the pool: it will be delivered again
        else:
            pool.pop(index)
        calls += 1
        try:
            emitted += len(await service.handle(event))
        except schema.SchemaError as exc:
            dead += 1
            await _dead_letter(
                client,
                stream,
                event.to_fields(),
                entry_id=entry_id,
                reason=exc.reason,
                group=service.name,
            )
    return Delivery(deliveries=calls, duplicates=dups, emitted=emitted, dead=dead)
