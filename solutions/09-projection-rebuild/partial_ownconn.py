"""Lab 09, rebuilt in place on its own connection: DEL then HSET (< 10).

Folds correctly and idempotently, but rebuilds the stored view
as DEL then HSET (two commands): a rebuild
killed in between leaves readers a half-built view. It uses a connection of its
own (from ``REDIS_URL``); the fault proxy cuts that one too. The crash sweep of the
rebuild catches it.
"""

from __future__ import annotations

import json
import os
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
    if event.type not in STATUS:
        return
    order = event.data["order"]
    row = view.setdefault(order, {"version": 0})
    if event.type == "OrderPlaced":
        row.update(customer=event.data["customer"], total=event.data["total"])
    if event.data["version"] > row["version"]:
        row.update(status=STATUS[event.type], version=event.data["version"])


def rebuild(
    client: redis.Redis,
    stream: str,
    key: str,
    *,
    fold: Callable[[View, Event], None] = apply,
) -> int:
    """Rebuild the projection stored in hash ``key`` from the whole history of ``stream``.

    Fold every event (``XRANGE`` from the start, in order) with ``fold`` into a
    fresh view and replace ``key`` with it (each order id -> its view as JSON)
    in one step, so readers never see a half-built projection and nothing
    stale survives. Return how many events
    were folded.
    """
    view: View = {}
    folded = 0
    for _, fields in client.xrange(stream):
        fold(view, Event.from_fields(fields))
        folded += 1
    own = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    own.delete(key)  # the old view is gone before the new one is written
    if view:
        own.hset(key, mapping={k: json.dumps(v) for k, v in view.items()})
    own.close()
    return folded
