"""How fresh is a view? Record its reads and the log's writes as one history for the checker.

A read model (the shop's status board) answers from what its projector has
applied so far. To judge it Jepsen-style, record every read of the view (when
it began, which version of each key it saw) and every write the log
acknowledged; :func:`eventlab.checker.stale_reads` then finds the reads that
missed a write acknowledged before they began — and, with ``within=``, whether
they stayed inside the staleness the product promises::

    history = History()
    for order in orders:
        oid = shop.place_order(client, registry=registry, **order).subject
        history.ok("storefront", "write", {"key": oid, "version": 1})  # acknowledged now
    await freshness.watch_view(history, lambda: projections.read(client, STATUS_BOARD), placed)
    freshness.log_writes(history, client, shop.stream())
    checker.stale_reads(history, within=5.0)

Versions rank what a key can show: an order is placed (1), accepted (2), then
confirmed or cancelled (3). Introduced in lesson 06 (is the optimistic view
stale?) and used in lesson 12's freshness table.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import pandas as pd
import redis

from eventlab import streams
from eventlab._errors import EventlabError
from eventlab.history import History

if TYPE_CHECKING:
    from eventlab.envelope import Event


class _Projection(Protocol):
    """What :func:`staleness` needs of a read model (``shop.projections.Projection`` has it)."""

    @property
    def ops(self) -> Callable[[Event], Sequence[Any]]: ...


__all__ = [
    "ORDER_EVENT_VERSIONS",
    "ORDER_STATUS_VERSIONS",
    "SHOP_REQUIREMENTS",
    "Requirement",
    "log_writes",
    "read_view",
    "staleness",
    "table",
    "watch_view",
]

ORDER_STATUS_VERSIONS: dict[str, int] = {
    "placed": 1,
    "accepted, pending": 2,
    "confirmed": 3,
    "cancelled": 3,
}
"""The shop's status board values, ranked: what version of an order a read saw."""

ORDER_EVENT_VERSIONS: dict[str, int] = {
    "OrderPlaced": 1,
    "OrderAccepted": 2,
    "OrderConfirmed": 3,
    "OrderCancelled": 3,
}
"""The order events that change the status board, ranked like :data:`ORDER_STATUS_VERSIONS`."""


def read_view(
    history: History,
    read: Callable[[], Mapping[str, Any]],
    keys: Sequence[str],
    *,
    versions: Mapping[str, int] = ORDER_STATUS_VERSIONS,
    process: str = "storefront",
) -> dict[str, int]:
    """Read the view once and record one read per key; return key → version seen.

    Each key's read is an ``invoke`` stamped when the view read began and an
    ``ok`` stamped when it returned, with ``{"key": k, "version": v}``: ``v`` is
    ``versions`` of the value the view shows (0 = the key is absent or unknown).
    """
    began = time.time_ns()
    view = read()
    ended = time.time_ns()
    seen: dict[str, int] = {}
    for key in keys:
        seen[key] = versions.get(str(view[key]), 0) if key in view else 0
        history.record(process, "invoke", "read", {"key": key}, time_ns=began)
        history.record(process, "ok", "read", {"key": key, "version": seen[key]}, time_ns=ended)
    return seen


async def watch_view(
    history: History,
    read: Callable[[], Mapping[str, Any]],
    keys: Sequence[str],
    *,
    final: int | None = None,
    timeout: float = 30.0,  # noqa: ASYNC109 - a deadline for the watch, not for one await
    interval: float = 0.02,
    versions: Mapping[str, int] = ORDER_STATUS_VERSIONS,
    process: str = "storefront",
) -> int:
    """Read the view every ``interval`` seconds until every key shows version ``final``.

    The first read happens at once, before this coroutine yields to the event
    loop: services running in the same loop cannot have applied anything
    published just before the call. Returns the number of view reads.

    Args:
        history: Where the reads are recorded.
        read: Reads the whole view (``key → value``).
        keys: The keys to read (the orders the caller placed).
        final: The version that ends the watch; default the highest in ``versions``.
        timeout: Seconds to watch at most.
        interval: Seconds between reads.
        versions: Ranks the view's values (see :data:`ORDER_STATUS_VERSIONS`).
        process: The reader's name in the history.
    """
    last = max(versions.values()) if final is None else final
    deadline = time.monotonic() + timeout
    reads = 0
    while True:
        seen = read_view(history, read, keys, versions=versions, process=process)
        reads += 1
        if all(v >= last for v in seen.values()) or time.monotonic() > deadline:
            return reads
        await asyncio.sleep(interval)


def log_writes(
    history: History,
    client: redis.Redis,
    stream: str,
    *,
    versions: Mapping[str, int] = ORDER_EVENT_VERSIONS,
    process: str = "log",
) -> int:
    """Record each log entry that changes a key as a write acknowledged when it was appended.

    An entry whose ``type`` is in ``versions`` becomes a ``write`` of
    ``{"key": subject, "version": versions[type]}``, acknowledged at its entry
    id's millisecond rounded up (never before the broker appended it; the
    producer's acknowledgement came a round trip later, so a producer that
    knows its own acknowledgement records it too, as in the module's example).
    Returns how many.
    """
    count = 0
    for entry_id, fields in streams.entries(client, stream):
        version = versions.get(fields.get("type", ""))
        if version is None:
            continue
        acked = (int(entry_id.split("-", 1)[0]) + 1) * 1_000_000
        value = {"key": fields.get("subject", ""), "version": version}
        history.record(process, "invoke", "write", value, time_ns=acked)
        history.record(process, "ok", "write", value, time_ns=acked)
        count += 1
    return count


# -- lesson 12: the freshness-vs-latency table, one measurement per row ----------------


@dataclass(frozen=True, slots=True)
class Requirement:
    """What the product asks of one piece of data, and how it is measured (lesson 12).

    Attributes:
        data: The piece of data.
        freshness: The requirement in the product's words.
        budget: The bound the measurement must stay within, in ``unit``.
        unit: ``"s"`` or a count (``"units oversold"``).
        measured_as: The statistic that is measured.
        guarantee: The guarantee chosen for it.
    """

    data: str
    freshness: str
    budget: float
    unit: str
    measured_as: str
    guarantee: str


SHOP_REQUIREMENTS: dict[str, Requirement] = {
    "status": Requirement(
        "order status shown to the customer",
        "a few seconds",
        5.0,
        "s",
        "p95 emitted → applied to the status board",
        "eventual: projection",
    ),
    "revenue": Requirement(
        "revenue per hour",
        "minutes",
        300.0,
        "s",
        "p95 emitted → applied to revenue per hour",
        "eventual: projection, rebuildable",
    ),
    "settle": Requirement(
        "order accepted → confirmed",
        "p99 under 5 s",
        5.0,
        "s",
        "p99 accepted → terminal, per order",
        "eventual: saga",
    ),
    "plums": Requirement(
        "plums left when reserving",
        "exact, now",
        0.0,
        "units oversold",
        "plums sold beyond the stock, fifty racing buyers",
        "strong: atomic in the broker",
    ),
}
"""The shop's requirements: the one place lesson 12's table and its stale-read check read."""


def staleness(
    handled: pd.DataFrame, client: redis.Redis, stream: str, projection: _Projection
) -> pd.Series:
    """Seconds from emitted to applied, per event that changes ``projection`` (indexed by id).

    Args:
        handled: ``Metrics.frame()`` rows of the projector's group with outcome ``ok``.
        client: A sync client.
        stream: The log the projector reads.
        projection: Only events for which ``projection.ops(event)`` writes something count.
    """
    relevant = {e.id for _, e in streams.replay(client, stream) if projection.ops(e)}
    rows = handled[handled["id"].isin(relevant)].drop_duplicates("id").set_index("id")
    return (rows["handled"] - rows["emitted"]).dt.total_seconds()


def table(
    measured: Mapping[str, float], requirements: Mapping[str, Requirement] = SHOP_REQUIREMENTS
) -> pd.DataFrame:
    """One row per requirement: its budget, its own measured value, and whether it is within.

    Raises:
        EventlabError: A requirement has no measurement (every row is measured, none shared).
    """
    missing = sorted(set(requirements) - set(measured))
    if missing:
        raise EventlabError(
            f"no measurement for {', '.join(missing)}",
            fix="measure every row of the table: pass measured={name: value, …}",
        )
    rows = [
        {
            "data": r.data,
            "required freshness": r.freshness,
            "budget": r.budget,
            "measured": float(measured[name]),
            "unit": r.unit,
            "measured as": r.measured_as,
            "within": float(measured[name]) <= r.budget,
            "guarantee": r.guarantee,
        }
        for name, r in requirements.items()
    ]
    return pd.DataFrame(rows, index=list(requirements))
