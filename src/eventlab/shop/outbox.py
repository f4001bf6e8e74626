"""The transactional outbox in Redis, and the naive dual write it replaces.

A **naive dual write** updates the service's state, then publishes the event:
two separate writes. A process that dies between them leaves a state change no
other service ever hears about — the event is lost for good.

With an **outbox**, the state change and the outgoing event are written in one
MULTI/EXEC to the service's own outbox stream (under its key prefix): both or
neither. A **relay** then copies outbox entries to the public stream and records
how far it got. A relay that dies after publishing but before recording
publishes those entries again — *at least once*, never lost; consumers dedupe by
event id.

The shop's **storefront** publishes through an outbox for real:
``shop.place_order(..., outbox=Outbox(client, service="storefront"))`` records the
order in the storefront's own hash and ``OrderPlaced`` in one ``MULTI``, and
``ShopRuntime(url, relays=["storefront"])`` runs its relay beside the services.
:func:`naive_writer`, :func:`outbox_writer` and :func:`relay_main` are process
targets (``processes.spawn("eventlab.shop.outbox:naive_writer", args=[…])``) that
place orders as the storefront and pause, ready to be SIGKILLed, right between
the two steps; :func:`audit` compares what the storefront recorded with what
reached the stream.

Introduced in lesson 06 ("The dual write, and the outbox"); tests in
``tests/test_shop_outbox.py`` and ``tests/test_shop_runtime.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from redis.client import Pipeline

from eventlab import _crash, processes, schema, streams
from eventlab import broker as broker_mod
from eventlab.envelope import Event
from eventlab.shop import core, events

__all__ = [
    "STOREFRONT",
    "Audit",
    "Outbox",
    "audit",
    "demo_event",
    "naive_writer",
    "outbox_writer",
    "relay_main",
]

STOREFRONT = "storefront"
"""The service that places orders (``OrderPlaced``) and, in lesson 06, owns an outbox."""


class Outbox:
    """A service's outbox: state + event in one MULTI, then a relay to the public stream.

    Args:
        client: A sync client.
        service: The owning service (the outbox lives under its key prefix).
        stream: Where the relay publishes (default: the shop stream; the events must
            then be valid against the schema registry).

    Used by the storefront in lesson 06 (``shop.place_order(..., outbox=…)``).
    """

    def __init__(self, client: redis.Redis, *, service: str, stream: str | None = None) -> None:
        """Bind to a broker."""
        self.client = client
        self.key = events.key(service, "outbox")
        self.position_key = self.key + ":relayed"
        self.stream = stream or events.stream()

    def commit(self, event: Event, write: Callable[[Pipeline], Any] | None = None) -> None:
        """Write the state change (``write(pipe)``) and the event to the outbox in one MULTI."""
        with self.client.pipeline(transaction=True) as pipe:
            if write is not None:
                write(pipe)
            pipe.xadd(self.key, event.to_fields())  # type: ignore[arg-type]
            pipe.execute()

    def pending(self) -> int:
        """Return how many outbox entries the relay has not published yet."""
        position = str(self.client.get(self.position_key) or "0-0")
        rows: Any = self.client.xrange(self.key, min="(" + position, max="+")
        return len(rows)

    def relay(
        self,
        *,
        batch: int = 100,
        before_record: Callable[[], None] | None = None,
    ) -> int:
        """Publish every outbox entry after the recorded position; return how many.

        Args:
            batch: Entries per round trip.
            before_record: Called after a batch is published and before its position
                is recorded (where a crash makes the relay publish again).
        """
        published = 0
        while True:
            position = str(self.client.get(self.position_key) or "0-0")
            rows: Any = self.client.xrange(self.key, min="(" + position, max="+", count=batch)
            if not rows:
                return published
            pipe = self.client.pipeline(transaction=False)
            for _, fields in rows:
                pipe.xadd(self.stream, fields)
            pipe.execute()
            published += len(rows)
            if before_record is not None:
                before_record()
            self.client.set(self.position_key, rows[-1][0])


@dataclass(frozen=True, slots=True)
class Audit:
    """What the storefront recorded against what reached the stream (:func:`audit`).

    Attributes:
        recorded: Order ids in the storefront's own state.
        published: Order ids with an ``OrderPlaced`` on the stream.
        lost: Recorded but never published: a customer's order nobody will handle.
        copies: Entries on the stream beyond the first of each event id (relay re-publishes).
    """

    recorded: frozenset[str]
    published: frozenset[str]
    lost: frozenset[str]
    copies: int


def audit(client: redis.Redis, *, prefix: str = "", stream: str | None = None) -> Audit:
    """Compare the storefront's recorded orders (ids starting ``prefix``) with the stream."""
    recorded = {str(k) for k in client.hkeys(events.key(STOREFRONT, "orders"))}
    placed = [
        e
        for _, e in streams.replay(client, stream or events.stream())
        if e.type == "OrderPlaced" and str(e.subject).startswith(prefix)
    ]
    recorded = {oid for oid in recorded if oid.startswith(prefix)}
    published = {str(e.subject) for e in placed}
    return Audit(
        recorded=frozenset(recorded),
        published=frozenset(published),
        lost=frozenset(recorded - published),
        copies=len(placed) - len({e.id for e in placed}),
    )


def demo_event(number: int) -> Event:
    """Return the ``OrderAccepted`` the orders service would emit for ``order-<number>``.

    A complete event, valid against ``OrderAccepted/v1`` and carrying the orders
    aggregate's first version (``seq`` 1), so the shop's consumers handle it.
    """
    order_id = f"order-{number}"
    return Event(
        type="OrderAccepted",
        source="orders",
        subject=order_id,
        data={
            "order_id": order_id,
            "customer": "outbox-demo",
            "items": [{"sku": "apple", "qty": 1}],
            "total": 100,
            "zone": "central",
            "saga": "choreography",
        },
        dataschema=schema.format_uri("OrderAccepted", 1),
        extensions={"seq": "1"},
    )


def _hang() -> None:
    processes.signal_ready()
    while True:  # wait here to be killed, between the two writes
        time.sleep(1)


def _orders(client: redis.Redis, count: str, seed: str) -> list[Event]:
    """Build the writer's orders before any counted command is sent (the consumers validate)."""
    registry = schema.Registry(client)
    return [
        core.order_placed(registry=registry, validate=False, **order)
        for order in core.random_orders(int(count), seed=int(seed))
    ]


def naive_writer(  # noqa: PLR0917 - process targets take positional strings
    url: str, stream: str, count: str, pause_at: str, seed: str = "0", die_after: str = "0"
) -> None:
    """Process target: the storefront as a dual write, ``count`` orders ``order-<seed>-…``.

    Per order: record it in the storefront's state, *then* XADD ``OrderPlaced`` to
    ``stream``. Hangs (ready to be killed) after the record of order number
    ``pause_at`` (``-1``: never); ``die_after`` > 0 SIGKILLs itself after that many
    commands instead (:func:`eventlab._crash.die_after_commands`).
    """
    client = broker_mod.client_for_url(url, decode_responses=True)
    placed = _orders(client, count, seed)
    with _crash.die_after_commands(int(die_after)):
        for number, event in enumerate(placed):
            core.record_order(client, event)
            if number == int(pause_at):
                _hang()
            streams.publish(client, stream, event)


def outbox_writer(  # noqa: PLR0917 - process targets take positional strings
    url: str, stream: str, count: str, pause_at: str, seed: str = "0", die_after: str = "0"
) -> None:
    """Process target: the storefront through its outbox (what ``place_order(outbox=…)`` does).

    Per order: the record and ``OrderPlaced`` in one MULTI; hangs after order
    ``pause_at`` (``-1``: never); ``die_after`` as in :func:`naive_writer`.
    """
    client = broker_mod.client_for_url(url, decode_responses=True)
    placed = _orders(client, count, seed)
    outbox = Outbox(client, service=STOREFRONT, stream=stream)
    with _crash.die_after_commands(int(die_after)):
        for number, event in enumerate(placed):
            core.submit_order(client, event, outbox=outbox)
            if number == int(pause_at):
                _hang()


def relay_main(url: str, stream: str, crash: str = "no", service: str = STOREFRONT) -> None:
    """Process target: relay ``service``'s outbox; ``crash="yes"`` hangs before recording."""
    client = broker_mod.client_for_url(url, decode_responses=True)
    Outbox(client, service=service, stream=stream).relay(
        batch=1000, before_record=_hang if crash == "yes" else None
    )
