"""The command side of event sourcing: decide from the fold, append with an expected version.

An event-sourced aggregate keeps no state but its events, one stream per
aggregate (``{<namespace>:es.<aggregate>}``). A command is handled in three steps:
**load** the aggregate's events (its *version* is how many there are), **decide**
from their fold which new events follow (or refuse), and **append** them *only if
the version is still the one the decision was made on*. The check and the append
are one Lua script on the broker (:data:`APPEND`), so no other writer can append in
between. Two writers that decided on the same version race; one wins, the other
gets a :class:`ConflictError`, re-reads and decides again (:func:`execute`).

Every appended event carries its position as the extension ``version`` (1, 2, …).
An append on a stale version would write a position twice: :func:`stale_appends`
finds those, and ``check=False`` (the mechanism removed) produces them.

How it differs from the read side (:mod:`eventlab.shop.projections`): a projector
refuses an event whose version *skips ahead* (an earlier one is missing, so it
waits) and skips one it has applied (a duplicate): it orders delivery of events
already decided. Lab 09's view keeps the newest version and ignores older ones.
Here the version guards a *decision*: nothing is appended that was decided on
state which has since moved.

Introduced in lesson 09 ("The command side: append with an expected version").
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import redis

from eventlab import streams
from eventlab._errors import EventlabError
from eventlab.envelope import Event

__all__ = [
    "APPEND",
    "ConflictError",
    "Executed",
    "Loaded",
    "RefusedError",
    "append",
    "balance",
    "execute",
    "load",
    "open_card",
    "redeem",
    "stale_appends",
    "stream_of",
]

APPEND = r"""#!lua
-- KEYS[1]: the aggregate's stream. ARGV[1]: the expected version (how many events the
-- writer saw). ARGV[2..]: each event's fields as a JSON array [k1, v1, k2, v2, ...].
local current = redis.call('XLEN', KEYS[1])
if current ~= tonumber(ARGV[1]) then
  return {0, current}
end
for i = 2, #ARGV do
  redis.call('XADD', KEYS[1], '*', unpack(cjson.decode(ARGV[i])))
end
return {1, current + #ARGV - 1}
"""
"""Check the version and append, in one step on the broker: both or neither."""


class ConflictError(EventlabError):
    """The aggregate moved since the decision: another writer appended first."""

    def __init__(self, stream: str, *, expected: int, actual: int) -> None:
        """Say which versions disagreed."""
        super().__init__(
            f"{stream}: decided on version {expected}, but it is at {actual} now",
            fix="re-read the aggregate, decide again on the new version, then append",
        )
        self.expected = expected
        self.actual = actual


class RefusedError(EventlabError):
    """The command is not allowed by the aggregate's current state (a business rule)."""


@dataclass(frozen=True, slots=True)
class Loaded:
    """An aggregate as read: its events in order, and its version (how many there are)."""

    events: tuple[Event, ...]
    version: int


@dataclass(frozen=True, slots=True)
class Executed:
    """What :func:`execute` did.

    Attributes:
        appended: The events appended (empty when refused).
        version: The aggregate's version after the append.
        conflicts: How many times another writer appended first (each: re-read, decide again).
        refused: The business reason, when the decision was a refusal.
    """

    appended: tuple[Event, ...]
    version: int
    conflicts: int
    refused: str | None = None


def stream_of(aggregate: str) -> str:
    """Return the stream of one aggregate, ``{<namespace>:es.<aggregate>}``."""
    return streams.stream_key(f"es.{aggregate}")


def load(client: redis.Redis, stream: str) -> Loaded:
    """Read an aggregate's events (XRANGE); its version is their count."""
    events = tuple(event for _, event in streams.replay(client, stream))
    return Loaded(events=events, version=len(events))


def append(
    client: redis.Redis,
    stream: str,
    events: Sequence[Event],
    *,
    expected_version: int,
    check: bool = True,
) -> int:
    """Append ``events`` if the aggregate is still at ``expected_version``; return the new version.

    Each event gets the extension ``version`` (its position, from 1). One Lua call
    checks and appends (:data:`APPEND`).

    Args:
        client: A sync client.
        stream: The aggregate's stream (:func:`stream_of`).
        events: What the decision produced.
        expected_version: The version the decision was made on (:attr:`Loaded.version`).
        check: ``False`` appends without the check — the mechanism removed, to see the
            stale appends it lets through.

    Raises:
        ConflictError: Another writer appended since ``expected_version``.
    """
    stamped = [
        dataclasses.replace(e, extensions={**e.extensions, "version": str(expected_version + i)})
        for i, e in enumerate(events, start=1)
    ]
    if not check:
        pipe = client.pipeline(transaction=False)
        for event in stamped:
            pipe.xadd(stream, event.to_fields())  # type: ignore[arg-type]
        pipe.execute()
        return expected_version + len(stamped)
    flat = [json.dumps([x for kv in e.to_fields().items() for x in kv]) for e in stamped]
    ok, version = client.register_script(APPEND)(keys=[stream], args=[expected_version, *flat])
    if not ok:
        raise ConflictError(stream, expected=expected_version, actual=int(version))
    return int(version)


def execute(
    client: redis.Redis,
    stream: str,
    decide: Callable[[tuple[Event, ...]], list[Event]],
    *,
    retries: int = 10,
    check: bool = True,
) -> Executed:
    """Handle one command: load, ``decide(events)``, append on that version; retry on a conflict.

    Args:
        client: A sync client.
        stream: The aggregate's stream.
        decide: The command: from the aggregate's events to the new events, or
            raise :class:`RefusedError`.
        retries: Conflicts tolerated before giving up (then :class:`ConflictError` is raised).
        check: Passed to :func:`append` (``False``: no expected-version check).
    """
    for conflicts in range(retries + 1):
        loaded = load(client, stream)
        try:
            new = decide(loaded.events)
        except RefusedError as refusal:
            return Executed((), loaded.version, conflicts, refused=str(refusal.args[0]))
        try:
            version = append(client, stream, new, expected_version=loaded.version, check=check)
        except ConflictError:
            if conflicts == retries:
                raise
            continue
        return Executed(tuple(new), version, conflicts)
    raise AssertionError("unreachable")  # pragma: no cover


def stale_appends(client: redis.Redis, stream: str) -> list[int]:
    """Return the versions written more than once: appends decided on a stale version."""
    seen: dict[int, int] = {}
    for _, event in streams.replay(client, stream):
        version = int(event.extensions.get("version", "0"))
        seen[version] = seen.get(version, 0) + 1
    return sorted(v for v, n in seen.items() if n > 1)


# -- the lesson's aggregate: a gift card -------------------------------------------------


def balance(events: Sequence[Event]) -> int:
    """Fold a gift card's events into its balance in cents (loaded minus redeemed)."""
    sign = {"CardLoaded": 1, "CardRedeemed": -1}
    return sum(sign.get(e.type, 0) * int(e.data["amount"]) for e in events)


def redeem(amount: int) -> Callable[[tuple[Event, ...]], list[Event]]:
    """The command "redeem ``amount`` cents": decided from the card's balance, refused if short."""

    def decide(events: tuple[Event, ...]) -> list[Event]:
        have = balance(events)
        if have < amount:
            raise RefusedError(f"balance {have} < {amount}", fix="redeem less, or load the card")
        card = events[0].subject if events else "card"
        return [Event(type="CardRedeemed", source="cards", subject=card, data={"amount": amount})]

    return decide


def open_card(client: redis.Redis, card: str, *, cents: int) -> str:
    """Start gift card ``card`` afresh (its stream deleted) with ``CardLoaded`` of ``cents``.

    Returns:
        The card's stream (:func:`stream_of`), at version 1.
    """
    stream = stream_of(card)
    client.delete(stream)
    loaded = Event(type="CardLoaded", source="cards", subject=card, data={"amount": int(cents)})
    append(client, stream, [loaded], expected_version=0)
    return stream
