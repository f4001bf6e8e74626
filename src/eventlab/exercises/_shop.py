"""What the try-it checks of lessons 06-10 share: run orders through the real shop services.

The checks place a few orders of their own (ids ``try-NN-…``) and drive the four
services' real handlers with :func:`eventlab.shop.deliver` on the lesson's broker,
so a check works the same in the lesson (where the shop already ran) and in a
test on an empty broker.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

import pandas as pd

from eventlab import schema, shop
from eventlab.course import Lesson
from eventlab.exercises import run_async
from eventlab.shop._service import Service


def registry(lesson: Lesson) -> schema.Registry:
    """The lesson's schema registry with the shop's schemas in it (registering is idempotent)."""
    found = schema.Registry(lesson.client)
    shop.register_schemas(found)
    return found


def place(
    lesson: Lesson, orders: Sequence[dict[str, Any]], *, exercise: str, stock: bool = True
) -> list[str]:
    """Create the groups, stock what ``orders`` need (unless ``stock=False``), place them.

    Returns:
        The orders' ids (``try-<exercise>-…``).
    """
    reg = registry(lesson)
    need: dict[str, int] = {}
    for order in orders if stock else ():
        for item in order["items"]:
            need[item["sku"]] = need.get(item["sku"], 0) + int(item["qty"])
    shop.setup(lesson.client, stock=need, registry=reg)
    ids = []
    for order in orders:
        order_id = f"try-{exercise}-{uuid.uuid4().hex[:8]}"
        shop.place_order(lesson.client, registry=reg, order_id=order_id, **order)
        ids.append(order_id)
    return ids


def run(lesson: Lesson, *, billing: type[Service] = shop.Billing) -> None:
    """Deliver every event on the shop's log to the four services until quiet (in log order)."""
    reg = registry(lesson)

    async def go() -> None:
        client = lesson.broker.async_client()
        try:
            kinds: list[type[Service]] = [shop.Inventory, billing, shop.Courier]
            services = [shop.Orders(client, reg), *(kind(client, reg) for kind in kinds)]
            await shop.deliver(client, services, reorder=False)
        finally:
            await client.aclose()

    run_async(go)


def outcomes(lesson: Lesson, ids: Sequence[str]) -> pd.Series:
    """Each order's authoritative view (``confirmed``, ``cancelled`` or ``pending``), by id."""
    views = shop.views_frame(lesson.client).set_index("order_id")
    return views["authoritative"].reindex(list(ids)).fillna("pending")
