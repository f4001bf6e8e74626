"""A saga that reacts to each event type, whatever state the order is in.

Not graded and not an answer: the notebook runs it to show the failure this lab
is about (duplicated events make the saga act twice). Your work is in
``exercise.py``.
"""

from __future__ import annotations

from typing import Any

from eventlab.envelope import Event

NEXT: dict[str, tuple[str, list[tuple[str, dict[str, Any]]]]] = {
    "OrderPlaced": ("reserving", [("ReserveStock", {})]),
    "StockReserved": ("charging", [("ChargePayment", {})]),
    "OutOfStock": ("cancelled", [("CancelOrder", {"reason": "out of stock"})]),
    "PaymentCharged": ("confirmed", [("ConfirmOrder", {})]),
    "PaymentFailed": ("compensating", [("ReleaseStock", {})]),
    "StockReleased": ("cancelled", [("CancelOrder", {"reason": "payment failed"})]),
}


def decide(state: str | None, event: Event) -> tuple[str | None, list[tuple[str, dict[str, Any]]]]:
    """Look the event type up, ignoring ``state``: every copy of an event acts again."""
    return NEXT.get(event.type, (state, []))
