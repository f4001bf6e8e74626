"""The shop's AsyncAPI declarations: what a service's faststream broker says it emits and consumes.

:func:`eventlab.shop.app.build` declares every service on its broker;
:mod:`eventlab.shop.contracts` turns the apps into the AsyncAPI document.

Introduced in lesson 08.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Annotated, Any

from faststream.redis import RedisBroker, StreamSub
from pydantic import WithJsonSchema

from eventlab.shop import events

__all__ = ["STOREFRONT_EMITS", "declare"]

STOREFRONT_EMITS = ("OrderPlaced",)
"""What the storefront (the caller of :func:`eventlab.shop.place_order`) sends."""


def _payload(event_type: str) -> Any:
    """A type whose JSON Schema is the registry schema of ``event_type`` (faststream reads it)."""
    return Annotated[dict[str, Any], WithJsonSchema(dict(events.SCHEMAS[event_type]))]


async def _described_only(*args: Any, **kwargs: Any) -> None:
    """Start nothing: the service's :class:`eventlab.consumer.Reliable` consumes the stream."""


def declare(
    broker: RedisBroker, name: str, *, emits: Iterable[str], handles: Iterable[str]
) -> None:
    """Declare on ``broker`` what service ``name`` emits and consumes, for the AsyncAPI document.

    A publisher per event type it emits, and a subscriber per event type it
    handles (in its consumer group), each with the type's JSON Schema. The
    subscribers describe and never read: the running service consumes through one
    reliable subscription (at-least-once, reclaim, dead letters) that faststream's
    own subscribers do not provide, so their ``start`` does nothing — a faststream
    subscriber reading the same group would steal entries from it.
    :func:`eventlab.shop.app.build` calls this on every service's broker.
    """
    for event_type in emits:
        broker.publisher(
            stream=events.stream(),
            title=f"{name}:{event_type}",
            description=f"{name} emits {event_type} (dataschema {event_type}/v<N>)",
            schema=_payload(event_type),
        )
    for event_type in sorted(handles):
        sub = broker.subscriber(
            stream=StreamSub(events.stream(), group=name, consumer=name),
            title=f"{name}:on:{event_type}",
        )
        sub(_subscriber_for(event_type))
        sub.start = _described_only  # type: ignore[method-assign]


def _subscriber_for(event_type: str) -> Callable[..., Any]:
    payload = _payload(event_type)

    async def receive(body: dict[str, Any]) -> None:
        """Documentation only: never called (see :func:`declare`)."""

    # postponed annotations are strings; faststream must see the real payload type
    receive.__annotations__["body"] = payload
    return receive
