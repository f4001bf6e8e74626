"""Lab 09 — projections: a fold over events, idempotent by version, rebuilt from history.

A projection (read model) is state computed from events: ``view = fold(apply,
events)``. The events are the truth, so a projection can always be rebuilt
from the log, and a *new* projection can be backfilled from old history.

Order events carry ``data = {"order", "version", ...}``: ``version`` counts the
order's events 1, 2, 3, … (``OrderPlaced`` is version 1 and carries
``customer`` and ``total``; then ``OrderPaid``, ``OrderShipped`` or
``OrderCancelled``). Delivery is at least once and not always in order, so
:func:`apply` must ignore an event whose version is not newer than the view's.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import redis

from eventlab.envelope import Event

STATUS = {
    "OrderPlaced": "placed",
    "OrderPaid": "paid",
    "OrderShipped": "shipped",
    "OrderCancelled": "cancelled",
}

View = dict[str, dict[str, Any]]
"""Order id -> {"status", "customer", "total", "version"}."""


def apply(view: View, event: Event) -> None:
    """Fold one order event into ``view`` (in place), idempotent by version.

    ``OrderPlaced`` sets ``customer`` and ``total`` (facts that never change,
    so even when it arrives late). ``status`` (from :data:`STATUS`) and
    ``version`` only move forward: if ``event.data["version"]`` is not greater
    than the order's current ``version`` (0 for an unknown order), leave them.
    Events of other types are ignored.
    """
    raise NotImplementedError


def rebuild(
    client: redis.Redis,
    stream: str,
    key: str,
    *,
    fold: Callable[[View, Event], None] = apply,
) -> int:
    """Rebuild the projection stored in hash ``key`` from the whole history of ``stream``.

    Fold every event (``XRANGE`` from the start, in order) with ``fold`` into a
    fresh view, write it to a temporary hash (each order id -> its view as
    JSON) and ``RENAME`` it over ``key`` in one step, so readers never see a
    half-built projection and nothing stale survives. Return how many events
    were folded.
    """
    raise NotImplementedError
