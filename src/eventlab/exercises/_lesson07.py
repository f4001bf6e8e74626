"""Lesson 07's try-it check: which compensations an orchestrator sends for each failure.

The check first asks the learner's ``compensations`` about the three failures,
then places three orchestrated orders that fail in each way (out of stock, a
declined card, a zone without couriers), runs them through the real services
and compares what the real orchestrator sent with the learner's answer.
"""

from __future__ import annotations

from typing import Any

from eventlab import shop
from eventlab.course import Lesson
from eventlab.exercises import _shop, exercise

COMMANDS = ("ReleaseStock", "RefundPayment")
FAILURES = ("StockRejected", "PaymentDeclined", "CourierUnavailable")
_DONE_BEFORE = {
    "StockRejected": "nothing had happened yet",
    "PaymentDeclined": "the stock was reserved, but no money was taken",
    "CourierUnavailable": "the stock was reserved and the payment captured",
}


def _failing_orders(lesson: Lesson) -> dict[str, str]:
    """Place and run one orchestrated order per failure; return failure → order id."""
    shop.decline_cards(lesson.client, ["try-07-declined"])
    shop.close_zones(lesson.client, ["try-07-nowhere"])
    how = {  # failure → (customer, zone, units of an item with 2 in stock)
        "StockRejected": ("try-07-ok", "central", 3),
        "PaymentDeclined": ("try-07-declined", "central", 1),
        "CourierUnavailable": ("try-07-ok", "try-07-nowhere", 1),
    }
    orders = [
        {
            "customer": customer,
            "zone": zone,
            "items": [{"sku": "try-07-item", "qty": qty}],
            "total": 100,
            "saga": "orchestration",
        }
        for customer, zone, qty in how.values()
    ]
    # each run adds what its orders can take; the first order then finds too little
    stock = lesson.client.hget(shop.events.key("inventory", "stock"), "try-07-item")
    if int(stock or 0) < 2:  # noqa: PLR2004 - what the two possible reservations take
        _shop.place(lesson, [], exercise="07")
        shop.restock(
            lesson.client, {"try-07-item": 2 - int(stock or 0)}, registry=_shop.registry(lesson)
        )
    ids = _shop.place(lesson, orders, exercise="07", stock=False)
    _shop.run(lesson)
    return dict(zip(how, ids, strict=True))


@exercise(
    "07-compensations",
    title="for every failure, exactly the compensations the orchestrator sends",
    hints=(
        (
            "undo what happened before the failure: after StockRejected nothing happened, after "
            "PaymentDeclined the stock was reserved, after CourierUnavailable stock and payment"
        ),
        "return lists such as [] or ['ReleaseStock', 'RefundPayment']",
    ),
)
def compensations(answer: Any, lesson: Lesson) -> str | None:
    """Ask ``answer`` about each failure, then compare with the orchestrator on the broker."""
    said = {failure: answer(failure) for failure in FAILURES}  # a blank raises here
    for failure, commands in said.items():
        if not isinstance(commands, list | tuple | set) or not set(commands) <= set(COMMANDS):
            return f"compensations({failure!r}) returned {commands!r}: a list of {list(COMMANDS)}"
    failing = _failing_orders(lesson)
    log = shop.order_events(lesson.client)
    for failure, order_id in failing.items():
        types = list(log[log["subject"] == order_id]["type"])
        sent = {t for t in types if t in COMMANDS}
        mine = set(said[failure])
        if mine != sent:
            missing, extra = sorted(sent - mine), sorted(mine - sent)
            what = f"you would skip {missing}" if missing else f"you would also send {extra}"
            return (
                f"after {failure} ({_DONE_BEFORE[failure]}) the orchestrator sent "
                f"{sorted(sent)}; {what}: undo exactly the steps that succeeded"
            )
    return None
