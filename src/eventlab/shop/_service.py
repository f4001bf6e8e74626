"""The one way every shop service handles an event: read its own state, decide, write atomically.

A handler WATCHes the order's key in the service's own prefix (plus any shared
key it decides on, such as inventory's stock levels), skips an event id it has
already processed, decides, and then in one MULTI/EXEC writes its new state, its
other effects and the events it emits (XADD to the shop stream). A crash at any
point leaves either nothing or everything; a redelivered event finds its id in
``seen`` and has no second effect; a concurrent writer makes EXEC fail and the
handler decides again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

import redis.asyncio
from redis.asyncio.client import Pipeline

from eventlab import schema
from eventlab.envelope import Event
from eventlab.shop import events

_dumps = json.JSONEncoder(separators=(",", ":")).encode


@dataclass(slots=True)
class Decision:
    """What one event makes a service do.

    Attributes:
        outputs: ``(type, data)`` of each event to emit, in order.
        writes: ``(pipeline method, *args)`` of each other write (``("hincrby", key, sku, -2)``).
    """

    outputs: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    writes: list[tuple[Any, ...]] = field(default_factory=list)

    def emit(self, event_type: str, data: dict[str, Any]) -> None:
        """Emit one event."""
        self.outputs.append((event_type, data))


class Service:
    """Base of the four shop services: idempotent, atomic event handling.

    Args:
        client: An asyncio client.
        registry: The schema registry; events in are validated, events out stamped
            and validated.

    Introduced in lesson 06.
    """

    name: ClassVar[str] = ""
    handles: ClassVar[frozenset[str]] = frozenset()
    emits: ClassVar[tuple[str, ...]] = ()

    def __init__(self, client: redis.asyncio.Redis, registry: schema.Registry) -> None:
        """Bind to a broker; the registry's current versions are read once, here."""
        self.client = client
        self.registry = registry
        # namespace() reads the environment and the state folder: resolve keys once, not per event
        self.stream = events.stream()
        self.prefix = events.key(self.name)
        self._versions = {t: registry.latest(t) or 1 for t in events.SCHEMAS}

    def order_key(self, order_id: str) -> str:
        """Return this service's key for one order."""
        return f"{self.prefix}:order:{order_id}"

    def own(self, *parts: str) -> str:
        """Return a key under this service's prefix."""
        return ":".join((self.prefix, *parts))

    def watch_keys(self, event: Event) -> list[str]:  # noqa: ARG002 - overridden per service
        """Return shared keys (besides the order's) the decision depends on."""
        return []

    async def read(
        self,
        pipe: Pipeline,  # noqa: ARG002 - overridden per service
        event: Event,  # noqa: ARG002
        state: dict[str, Any],  # noqa: ARG002
    ) -> dict[str, Any]:
        """Read what the decision needs from this service's own keys (under WATCH)."""
        return {}

    def decide(self, state: dict[str, Any], event: Event, reads: dict[str, Any]) -> Decision:
        """Update ``state`` in place and return what to emit and write (pure)."""
        raise NotImplementedError

    async def state(self, order_id: str) -> dict[str, Any]:
        """Return this service's state of one order (``{}`` if it has none)."""
        raw = await self.client.get(self.order_key(order_id))
        return dict(json.loads(raw)) if raw else {}

    async def handle(self, event: Event) -> list[Event]:
        """Handle one event; return the events it emitted (none for a duplicate or another type).

        Raises:
            eventlab.schema.SchemaError: The event does not match its dataschema
                (a permanent error: the runtime dead-letters it with the reason).
        """
        if event.type not in self.handles:
            return []
        event = self.registry.validate(event)
        order_id = str(event.data["order_id"])
        key = self.order_key(order_id)
        emitted: list[Event] = []

        async def attempt(pipe: Pipeline) -> None:
            emitted.clear()
            raw = await pipe.get(key)
            state: dict[str, Any] = json.loads(raw) if raw else {"seen": [], "seq": 0}
            if event.id in state["seen"]:
                return
            reads = await self.read(pipe, event, state)
            decision = self.decide(state, event, reads)
            state["seen"].append(event.id)
            for event_type, data in decision.outputs:
                state["seq"] += 1
                out = event.follow(
                    type=event_type,
                    source=self.name,
                    data=data,
                    subject=order_id,
                    dataschema=schema.format_uri(event_type, self._versions[event_type]),
                ).evolve(extensions={"seq": str(state["seq"])})
                emitted.append(self.registry.validate(out))
            pipe.multi()  # type: ignore[no-untyped-call]
            pipe.set(key, _dumps(state))
            for method, *args in decision.writes:
                getattr(pipe, method)(*args)
            for out in emitted:
                pipe.xadd(self.stream, out.to_fields())  # type: ignore[arg-type]

        await self.client.transaction(attempt, key, *self.watch_keys(event))
        return emitted
