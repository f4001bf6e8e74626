"""Dark launch: run a v2 consumer in shadow beside v1 on the same stream, and compare.

The v2 projector reads the shop stream under its own consumer group
(``views-shadow``), so it sees every event v1 sees without taking any from it,
and writes only to shadow keys (``{<namespace>:shop}:views:shadow:<name>``) that
nobody serves. :func:`compare_frame` lines its results up with v1's; switch over
only when the differences are the ones you meant.

Introduced in lesson 12.
"""

from __future__ import annotations

from collections.abc import Sequence

import pandas as pd
import redis

from eventlab.envelope import Event
from eventlab.metrics import Metrics
from eventlab.shop.app import ServiceApp, build
from eventlab.shop.projections import Op, Projection, compare, read

__all__ = ["STATUS_BOARD_V2", "compare_frame", "shadow"]


def _status_v2_ops(event: Event) -> list[Op]:
    if event.type == "OrderCancelled":
        return [("hset", str(event.subject), f"cancelled: {event.data['reason']}")]
    status = {
        "OrderPlaced": "placed",
        "OrderAccepted": "accepted, pending",
        "OrderConfirmed": "confirmed",
    }.get(event.type)
    return [("hset", str(event.subject), status)] if status else []


STATUS_BOARD_V2 = Projection("status", _status_v2_ops)
"""v2 of the status board: a cancelled order also says why (``cancelled: card declined``)."""


def shadow(
    url: str, projections: Sequence[Projection], *, metrics: Metrics | None = None
) -> ServiceApp:
    """Build the shadow projector (group ``views-shadow``, writing shadow keys only)."""
    return build("views-shadow", url, projections=projections, metrics=metrics)


def compare_frame(client: redis.Redis, projections: Sequence[Projection]) -> pd.DataFrame:
    """Summarise v1 (live) against v2 (shadow): one row per projection.

    Columns: ``projection``, ``fields`` (in either copy), ``differing``, ``agree`` (share, 0-1).
    """
    rows = []
    for projection in projections:
        fields = set(read(client, projection)) | set(read(client, projection, target="shadow"))
        differing = len(compare(client, projection))
        rows.append(
            {
                "projection": projection.name,
                "fields": len(fields),
                "differing": differing,
                "agree": 1.0 if not fields else 1 - differing / len(fields),
            }
        )
    return pd.DataFrame(rows, columns=["projection", "fields", "differing", "agree"])
