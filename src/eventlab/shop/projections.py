"""Event sourcing on the shop's log: folds, projections, rebuilds, backfills, snapshots.

The log (``XRANGE`` of the shop stream) is the truth; everything else is derived:

- an **aggregate** (one order) is rebuilt by folding its events (:func:`fold_order`);
- a **projection** (a read model: :data:`STATUS_BOARD`, :data:`STOCK_LEVELS`,
  :data:`REVENUE_PER_HOUR`) maps each event to small hash writes; :func:`rebuild`
  folds the whole log, :func:`rebuild` with ``upto=N`` gives the state as of event N;
- a live :class:`Projector` applies the same writes as events arrive, **idempotently
  by per-aggregate version**: each event carries its source's version of its
  aggregate (``seq``); a version already applied is skipped, a version ahead of the
  next expected one is refused (retried later), so duplicates, replays and reclaims
  never apply a change twice or out of order;
- :func:`backfill` builds a new projection from history and records where it
  stopped, so a consumer group can continue live from there;
- :func:`save_snapshot` stores a fold and its position; :func:`rebuild` with
  ``from_snapshot=True`` folds only what came after.

Introduced in lesson 09.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import redis
import redis.asyncio

from eventlab import schema, streams
from eventlab.envelope import Event
from eventlab.shop import events

__all__ = [
    "PROJECTIONS",
    "REVENUE_PER_HOUR",
    "STATUS_BOARD",
    "STOCK_LEVELS",
    "Fold",
    "OutOfOrderError",
    "Projection",
    "Projector",
    "as_of",
    "backfill",
    "compare",
    "fold",
    "fold_order",
    "read",
    "rebuild",
    "save_snapshot",
]

Op = tuple[str, str, Any]
"""One write: ``("hset", field, value)`` or ``("hincrby", field, amount)``."""

# KEYS: 1 versions hash, 2 target hash. ARGV: aggregate, seq, then (op, field, value) triples.
_APPLY = """
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
local seq = tonumber(ARGV[2])
if seq <= cur then return 0 end
if seq ~= cur + 1 then return -1 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
for i = 3, #ARGV, 3 do
  if ARGV[i] == 'hset' then
    redis.call('HSET', KEYS[2], ARGV[i + 1], ARGV[i + 2])
  else
    redis.call('HINCRBY', KEYS[2], ARGV[i + 1], ARGV[i + 2])
  end
end
return 1
"""


@dataclass(frozen=True, slots=True)
class Projection:
    """A read model: a name and the writes each event makes to one hash.

    Attributes:
        name: Its name (also part of its keys).
        ops: ``ops(event) -> [("hset", field, value) | ("hincrby", field, n), …]``.
    """

    name: str
    ops: Callable[[Event], list[Op]]


def _status_ops(event: Event) -> list[Op]:
    status = {
        "OrderPlaced": "placed",
        "OrderAccepted": "accepted, pending",
        "OrderConfirmed": "confirmed",
        "OrderCancelled": "cancelled",
    }.get(event.type)
    return [("hset", str(event.subject), status)] if status else []


def _stock_ops(event: Event) -> list[Op]:
    if event.type == "StockAdded":
        return [("hincrby", event.data["sku"], int(event.data["qty"]))]
    sign = {"StockReserved": -1, "StockReleased": 1}.get(event.type)
    if sign is None:
        return []
    return [("hincrby", i["sku"], sign * int(i["qty"])) for i in event.data["items"]]


def _hour(event: Event) -> str:
    return event.time.strftime("%Y-%m-%dT%H:00Z")


def _revenue_ops(event: Event) -> list[Op]:
    if event.type == "PaymentCaptured":
        return [("hincrby", _hour(event), int(event.data["amount"]))]
    if event.type == "PaymentRefunded" and event.data["amount"]:
        return [("hincrby", _hour(event), -int(event.data["amount"]))]
    return []


STATUS_BOARD = Projection("status", _status_ops)
"""Order id → ``placed`` / ``accepted, pending`` / ``confirmed`` / ``cancelled``."""

STOCK_LEVELS = Projection("stock", _stock_ops)
"""Sku → units available (added - reserved + released)."""

REVENUE_PER_HOUR = Projection("revenue", _revenue_ops)
"""Hour (``2026-11-26T09:00Z``) → cents captured minus cents refunded in that hour."""

PROJECTIONS = (STATUS_BOARD, STOCK_LEVELS, REVENUE_PER_HOUR)
"""The shop's projections."""


@dataclass(slots=True)
class Fold:
    """A projection folded in memory.

    Attributes:
        state: The read model (field → value), as the hash would hold it.
        versions: ``"<source>|<subject>"`` → the last version applied.
        position: The last entry id folded (``"0-0"`` if none).
        applied: Events that changed the versions (duplicates excluded).
    """

    state: dict[str, Any]
    versions: dict[str, int]
    position: str = "0-0"
    applied: int = 0

    def apply(self, projection: Projection, entry_id: str, event: Event) -> None:
        """Fold one event (skipped if its version was applied already)."""
        self.position = entry_id
        seq = events.seq_of(event)
        if seq is None:
            return
        aggregate = f"{event.source}|{event.subject}"
        if seq <= self.versions.get(aggregate, 0):
            return
        self.versions[aggregate] = seq
        self.applied += 1
        for op, field, value in projection.ops(event):
            if op == "hset":
                self.state[field] = value
            else:
                self.state[field] = int(self.state.get(field, 0)) + int(value)


def fold(
    projection: Projection,
    entries: Iterable[tuple[str, Event]],
    *,
    start: Fold | None = None,
    upto: int | None = None,
) -> Fold:
    """Fold ``(entry id, event)`` pairs into a projection (the first ``upto`` only, if given)."""
    result = start or Fold(state={}, versions={})
    for count, (entry_id, event) in enumerate(entries, 1):
        if upto is not None and count > upto:
            break
        result.apply(projection, entry_id, event)
    return result


def _snapshot_key(projection: Projection) -> str:
    return events.key("views", "snapshot", projection.name)


def save_snapshot(client: redis.Redis, projection: Projection) -> Fold:
    """Fold the whole log and store the result with its position; return it."""
    result = rebuild(client, projection)
    body = {"state": result.state, "versions": result.versions, "position": result.position}
    client.set(_snapshot_key(projection), json.dumps(body))
    return result


def rebuild(
    client: redis.Redis,
    projection: Projection,
    *,
    upto: int | None = None,
    from_snapshot: bool = False,
) -> Fold:
    """Rebuild a projection from the log (XRANGE replay).

    Args:
        client: A sync client.
        projection: What to build.
        upto: Fold only the first ``upto`` entries (the state as of event N).
        from_snapshot: Start from the last :func:`save_snapshot` and fold only later entries.
    """
    start: Fold | None = None
    begin = "-"
    if from_snapshot:
        raw = client.get(_snapshot_key(projection))
        if raw is not None:
            body = json.loads(str(raw))
            start = Fold(state=body["state"], versions=body["versions"], position=body["position"])
            begin = "(" + body["position"]
    return fold(
        projection, streams.replay(client, events.stream(), start=begin), start=start, upto=upto
    )


def as_of(client: redis.Redis, projection: Projection, n: int) -> dict[str, Any]:
    """Return the projection's state after the first ``n`` events of the log."""
    return rebuild(client, projection, upto=n).state


def _keys(projection: Projection, target: str) -> tuple[str, str]:
    base = events.key("views", target, projection.name)
    return base + ":versions", base


def read(client: redis.Redis, projection: Projection, *, target: str = "live") -> dict[str, Any]:
    """Return a stored projection (``target`` ``"live"``, ``"shadow"`` or any name) as a dict.

    Counters come back as ``int``, statuses as ``str`` — the same shapes a :class:`Fold` holds.
    """
    raw: dict[str, str] = client.hgetall(_keys(projection, target)[1])  # type: ignore[assignment]
    return {k: int(v) if v.lstrip("-").isdigit() else v for k, v in raw.items()}


def backfill(client: redis.Redis, projection: Projection, *, target: str = "live") -> str:
    """Build a stored projection from history; return the last entry id folded.

    Start the projection's consumer group at the returned id to continue live
    without missing or repeating anything (repeats would be skipped by version anyway).
    """
    result = rebuild(client, projection)
    versions_key, target_key = _keys(projection, target)
    with client.pipeline(transaction=True) as pipe:
        pipe.delete(versions_key, target_key)
        if result.state:
            pipe.hset(target_key, mapping={k: str(v) for k, v in result.state.items()})
        if result.versions:
            pipe.hset(versions_key, mapping={k: str(v) for k, v in result.versions.items()})
        pipe.execute()
    return result.position


class OutOfOrderError(Exception):
    """An event's version is ahead of the next one expected: an earlier one is still missing."""


class Projector:
    """Apply projections live, one Lua call per (event, projection), idempotent by version.

    Args:
        client: An asyncio client.
        projections: The projections to maintain.
        target: Where they are stored: ``"live"`` (default) or ``"shadow"`` for a dark launch.
        registry: If given, every event is validated and upcast to its type's newest
            version first (a ``SchemaError`` is permanent: the runtime dead-letters the
            event with the reason).

    Introduced in lesson 09.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        projections: Sequence[Projection] = PROJECTIONS,
        *,
        target: str = "live",
        registry: schema.Registry | None = None,
    ) -> None:
        """Bind to a broker."""
        self.client = client
        self.projections = list(projections)
        self.target = target
        self.registry = registry
        self._script = client.register_script(_APPLY)
        self._versions: dict[str, int | None] = {}

    async def handle(self, event: Event) -> int:
        """Apply one event to every projection; return how many applied it (0: a duplicate).

        Raises:
            OutOfOrderError: An earlier version of the aggregate has not been applied
                yet (a transient error: the runtime retries it later).
        """
        if self.registry is not None:
            # validate, then read an older version as the newest one (upcasters); the
            # newest version is looked up once per type, not per event
            if event.type not in self._versions:
                self._versions[event.type] = self.registry.latest(event.type)
            event = self.registry.upcast(event, to=self._versions[event.type])
        seq = events.seq_of(event)
        if seq is None:
            return 0
        applied = 0
        for projection in self.projections:
            args: list[Any] = [f"{event.source}|{event.subject}", seq]
            for op, field, value in projection.ops(event):
                args += [op, field, value]
            result = int(await self._script(keys=list(_keys(projection, self.target)), args=args))
            if result < 0:
                raise OutOfOrderError(
                    f"{event.type} {event.id} has version {seq} of {event.source}|{event.subject}, "
                    "an earlier one is missing"
                )
            applied += result
        return applied


def compare(
    client: redis.Redis, projection: Projection, *, left: str = "live", right: str = "shadow"
) -> pd.DataFrame:
    """Return the fields on which two stored copies of a projection disagree.

    Columns: ``field``, ``left``, ``right`` (``None`` where a copy lacks the field).
    """
    a, b = read(client, projection, target=left), read(client, projection, target=right)
    rows = [
        {"field": f, "left": a.get(f), "right": b.get(f)}
        for f in sorted(set(a) | set(b))
        if a.get(f) != b.get(f)
    ]
    return pd.DataFrame(rows, columns=["field", "left", "right"])


def fold_order(order_events: Iterable[Event]) -> dict[str, Any]:
    """Rebuild one order (the aggregate) by folding its events, as every service saw it.

    Returns ``{"status", "stock", "payment", "courier", "reason", "events"}``.
    """
    state: dict[str, Any] = {
        "status": None,
        "stock": None,
        "payment": None,
        "courier": None,
        "reason": None,
        "events": 0,
    }
    changes: Mapping[str, tuple[str, str]] = {
        "OrderPlaced": ("status", "placed"),
        "OrderAccepted": ("status", "accepted, pending"),
        "OrderConfirmed": ("status", "confirmed"),
        "OrderCancelled": ("status", "cancelled"),
        "StockReserved": ("stock", "reserved"),
        "StockRejected": ("stock", "rejected"),
        "StockReleased": ("stock", "released"),
        "PaymentCaptured": ("payment", "captured"),
        "PaymentDeclined": ("payment", "declined"),
        "PaymentRefunded": ("payment", "refunded"),
        "CourierAssigned": ("courier", "assigned"),
        "CourierUnavailable": ("courier", "unavailable"),
        "CourierReleased": ("courier", "released"),
    }
    seen: set[str] = set()
    for event in order_events:
        if event.id in seen:
            continue
        seen.add(event.id)
        state["events"] += 1
        change = changes.get(event.type)
        if change is None:
            continue
        field, value = change
        if field == "status" and state["status"] in {"confirmed", "cancelled"}:
            continue  # terminal is terminal
        state[field] = value
        if event.type == "OrderCancelled":
            state["reason"] = event.data["reason"]
    return state
