"""Lesson 09's try-it check: a new projection, units sold per sku, backfilled from the log.

The learner writes the projection's ``ops``. The check folds the shop's whole
log through it (:func:`eventlab.shop.projections.rebuild`) and compares each
sku with what the log says was reserved and not released again. On an empty
log (a test) it first runs two orders through the shop, one of them declined,
so a reservation and a release are there to count.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from eventlab import shop, streams
from eventlab.course import Lesson
from eventlab.exercises import _shop, exercise
from eventlab.shop import projections


def _truth(lesson: Lesson) -> tuple[Counter[str], Counter[str]]:
    """Units reserved and units released per sku, from the log."""
    reserved: Counter[str] = Counter()
    released: Counter[str] = Counter()
    for _, event in streams.replay(lesson.client, shop.stream()):
        counter = {"StockReserved": reserved, "StockReleased": released}.get(event.type)
        if counter is None:
            continue
        for item in event.data.get("items", []):
            counter[item["sku"]] += int(item["qty"])
    return reserved, released


@exercise(
    "09-units-sold",
    title="units sold per sku, folded from the whole log",
    hints=(
        (
            "StockReserved takes units and StockReleased gives them back: return "
            "[('hincrby', item['sku'], +qty or -qty) for item in event.data['items']] for those "
            "two types, and [] for every other event"
        ),
        "a released order's items are in the StockReleased event itself (event.data['items'])",
    ),
)
def units_sold(answer: Any, lesson: Lesson) -> str | None:
    """Rebuild ``Projection("units-sold", answer)`` from the log; compare per sku."""
    reserved, released = _truth(lesson)
    if not released:  # an empty log: a sale and a cancelled one to count
        shop.decline_cards(lesson.client, ["try-09-declined"])
        orders = [
            {"customer": c, "items": [{"sku": "pear", "qty": 2}], "total": 200}
            for c in ("try-09-ok", "try-09-declined")
        ]
        _shop.place(lesson, orders, exercise="09")
        _shop.run(lesson)
        reserved, released = _truth(lesson)
    folded = projections.rebuild(lesson.client, projections.Projection("units-sold", answer))
    state = folded.state  # a blank raised NotImplementedError above
    for sku in sorted(set(reserved) | set(state)):
        want, got = reserved[sku] - released[sku], int(state.get(sku, 0) or 0)
        if got == want:
            continue
        if got == reserved[sku]:
            return (
                f"{sku}: you count {got}, but {released[sku]} of the {reserved[sku]} reserved "
                "units were released again (StockReleased): subtract them"
            )
        return f"{sku}: your projection says {got} sold, the log says {want} (reserved - released)"
    return None
