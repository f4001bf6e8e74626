"""Lesson 06's try-it check: change one of billing's rules and watch the shop converge differently.

The learner subclasses :class:`eventlab.shop.Billing` and adds a fraud rule
(decline any order above 500 cents). The check places four orders of 200, 500,
501 and 900 cents and runs them through the real orders, inventory and courier
services with the learner's billing; the two large ones must converge to
*cancelled* (stock released by inventory), the others to *confirmed*.
"""

from __future__ import annotations

from typing import Any

from eventlab import shop
from eventlab.course import Lesson
from eventlab.envelope import Event
from eventlab.exercises import _shop, exercise

LIMIT = 500
TOTALS = (200, 500, 501, 900)


@exercise(
    "06-strict-billing",
    title="orders above 500 cents are declined by your billing and converge to cancelled",
    hints=(
        (
            "in interpret(), keep reads from super().interpret(); when it is not empty (a "
            "capture), set reads['declined'] = reads['declined'] or event.data['total'] > 500"
        ),
        "the limit is strict: an order of exactly 500 cents is still fine",
    ),
)
def strict_billing(answer: Any, lesson: Lesson) -> str | None:
    """Run four orders through the shop with ``answer`` as billing; check how each ended."""
    if not (isinstance(answer, type) and issubclass(answer, shop.Billing)):
        return "StrictBilling must be a class that extends shop.Billing"
    probe = Event(
        type="StockReserved",
        source="inventory",
        data={"order_id": "probe", "customer": "probe", "total": 900, "saga": "choreography"},
    )
    # a blank raises NotImplementedError here, before any order is placed
    reads = answer(lesson.broker.async_client(), _shop.registry(lesson)).interpret(probe, [0])
    if not isinstance(reads, dict) or "declined" not in reads:
        return "interpret() must return the dict super().interpret() gives, with 'declined' in it"
    orders = [
        {"customer": f"try-06-{total}", "items": [{"sku": "apple", "qty": 1}], "total": total}
        for total in TOTALS
    ]
    ids = _shop.place(lesson, orders, exercise="06")
    _shop.run(lesson, billing=answer)
    ended = dict(zip(TOTALS, _shop.outcomes(lesson, ids), strict=True))
    if all(outcome == "confirmed" for outcome in ended.values()):
        return (
            "every order was confirmed, the 501 and 900 cent ones too: your rule never declined; "
            "set reads['declined'] when event.data['total'] > 500"
        )
    for total, outcome in ended.items():
        expected = "cancelled" if total > LIMIT else "confirmed"
        if outcome != expected:
            return (
                f"the order of {total} cents ended {outcome!r}, expected {expected!r}: decline "
                f"only totals above {LIMIT} (strictly), and keep declining declined cards"
            )
    return None
