"""Version ranges: which versions of an event type each live consumer accepts.

A consumer declares a **range** (``RefundIssued`` v1..v2) and publishes it to the
broker beside the schemas (``{<namespace>:@schema}:<type>:ranges``, consumer →
``"low-high"``). Reading, it upcasts every version in the range to the highest
one it handles and refuses anything outside with :class:`OutOfRangeError`, whose
message names the range — passed as ``validate=`` to
:class:`eventlab.consumer.Reliable`, such an event is dead-lettered with that
reason (:func:`reader`).

Producing, the deploy gate asks :func:`gate` whether a version is inside the
range of **every** live consumer of its type: a producer that would emit a
version some live consumer cannot read is refused before it ships.
``eventlab contracts check`` applies it to every publisher in the AsyncAPI
document (:func:`eventlab.contracts.check`).

Introduced in lesson 08 ("Version ranges").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from eventlab import schema, streams
from eventlab._errors import EventlabError
from eventlab.envelope import Event

__all__ = [
    "OutOfRangeError",
    "VersionRange",
    "declare",
    "forget",
    "gate",
    "live",
    "reader",
]


@dataclass(frozen=True, slots=True)
class VersionRange:
    """The versions ``low``..``high`` (inclusive) of ``event_type`` a consumer accepts."""

    event_type: str
    low: int
    high: int

    def __post_init__(self) -> None:
        """Refuse an empty range."""
        if not 1 <= self.low <= self.high:
            raise EventlabError(
                f"range v{self.low}..v{self.high} of {self.event_type} is empty",
                fix="pass 1 <= low <= high",
            )

    def __contains__(self, version: object) -> bool:
        """Whether ``version`` (an int) is in the range."""
        return isinstance(version, int) and self.low <= version <= self.high

    def __str__(self) -> str:
        """``RefundIssued v1..v2``."""
        return f"{self.event_type} v{self.low}..v{self.high}"


class OutOfRangeError(EventlabError):
    """An event version the consumer does not accept (dead-letter it: retrying cannot help)."""


def _key(event_type: str) -> str:
    return f"{{{streams.namespace()}:@schema}}:{event_type}:ranges"  # the registry's hash tag


def declare(registry: schema.Registry, consumer: str, accepted: VersionRange) -> None:
    """Publish that live consumer ``consumer`` accepts ``accepted`` (replaces its earlier range)."""
    registry.client.hset(_key(accepted.event_type), consumer, f"{accepted.low}-{accepted.high}")


def forget(registry: schema.Registry, event_type: str, consumer: str | None = None) -> None:
    """Remove one consumer's range (it is retired), or every range of ``event_type``."""
    if consumer is None:
        registry.client.delete(_key(event_type))
    else:
        registry.client.hdel(_key(event_type), consumer)


def live(registry: schema.Registry, event_type: str) -> dict[str, VersionRange]:
    """Return the declared ranges of ``event_type``'s live consumers (consumer → range)."""
    raw: dict[str, str] = registry.client.hgetall(_key(event_type))  # type: ignore[assignment]
    out = {}
    for consumer, text in sorted(raw.items()):
        low, _, high = text.partition("-")
        out[consumer] = VersionRange(event_type, int(low), int(high))
    return out


def gate(registry: schema.Registry, event_type: str, version: int) -> list[str]:
    """Return why a producer must not emit ``event_type`` v``version`` (empty: it may).

    One problem per live consumer whose declared range does not contain ``version``.
    """
    return [
        f"{event_type} v{version} is outside the range of live consumer {consumer} ({accepted})"
        for consumer, accepted in live(registry, event_type).items()
        if version not in accepted
    ]


def reader(registry: schema.Registry, accepted: VersionRange) -> Callable[[Event], Event]:
    """Return a ``validate=`` hook for a consumer of ``accepted``: upcast in range, refuse outside.

    An event of ``accepted.event_type`` with a version in the range is validated and
    upcast to ``accepted.high``; one outside raises :class:`OutOfRangeError` naming
    the range. Events of other types pass unchanged.
    """

    def read(event: Event) -> Event:
        if event.type != accepted.event_type:
            return event
        _, version = schema.parse_uri(event.dataschema or "")
        if version not in accepted:
            raise OutOfRangeError(
                f"{event.type} v{version} is outside this consumer's range {accepted}",
                fix=f"deploy a consumer that accepts v{version}, then redrive the dead letter",
            )
        return registry.upcast(event, to=accepted.high)

    return read
