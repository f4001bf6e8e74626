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

:func:`naive_writer`, :func:`outbox_writer` and :func:`relay_main` are process
targets (``processes.spawn("eventlab.shop.outbox:naive_writer", args=[…])``) that
pause, ready to be killed, right between the two steps.

No lesson uses this module yet: it is taught by its tests
(``tests/test_shop_runtime.py``: the dual write that loses an event, the outbox
that does not, and relayed events the shop's consumers accept) and described in
issue 5 ("Outbox in Redis"). The events it writes are real ``OrderAccepted``
events (full data, ``dataschema`` ``OrderAccepted/v1``, ``seq``), so relaying them
to the shop stream feeds the running shop instead of its dead letters.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis
from redis.client import Pipeline

from eventlab import broker as broker_mod
from eventlab import processes, schema, streams
from eventlab.envelope import Event
from eventlab.shop import events

__all__ = ["Outbox", "demo_event", "naive_writer", "outbox_writer", "relay_main"]


class Outbox:
    """A service's outbox: state + event in one MULTI, then a relay to the public stream.

    Args:
        client: A sync client.
        service: The owning service (the outbox lives under its key prefix).
        stream: Where the relay publishes (default: the shop stream; the events must
            then be valid against the schema registry, as :func:`demo_event`'s are).

    Not yet used by a lesson; see the module docstring.
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


def demo_event(number: int) -> Event:
    """Return the ``OrderAccepted`` the demo writers emit for order ``order-<number>``.

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


def naive_writer(url: str, stream: str, count: str, pause_at: str) -> None:
    """Process target: ``count`` times write state, then XADD; hang after state ``pause_at``."""
    client = broker_mod.client_for_url(url, decode_responses=True)
    for number in range(int(count)):
        client.hset(events.key("orders", "state"), f"order-{number}", "accepted")
        if number == int(pause_at):
            _hang()
        streams.publish(client, stream, demo_event(number))


def outbox_writer(url: str, stream: str, count: str, pause_at: str) -> None:
    """Process target: ``count`` times state + outbox in one MULTI; hang after ``pause_at``."""
    client = broker_mod.client_for_url(url, decode_responses=True)
    outbox = Outbox(client, service="orders", stream=stream)
    for number in range(int(count)):
        name = f"order-{number}"

        def write(pipe: Pipeline, name: str = name) -> None:
            pipe.hset(events.key("orders", "state"), name, "accepted")

        outbox.commit(demo_event(number), write)
        if number == int(pause_at):
            _hang()


def relay_main(url: str, stream: str, crash: str = "no") -> None:
    """Process target: relay the orders outbox; ``crash="yes"`` hangs before recording progress."""
    client = broker_mod.client_for_url(url, decode_responses=True)
    Outbox(client, service="orders", stream=stream).relay(
        batch=1000, before_record=_hang if crash == "yes" else None
    )
