"""A projection that trusts delivery order: the last event to arrive wins.

Not graded and not an answer: the notebook runs it to show the failure this lab
is about (a view drifted by duplicated and reordered delivery). Your work is in
``exercise.py``.
"""

from __future__ import annotations

from typing import Any

from eventlab.envelope import Event

STATUS = {
    "OrderPlaced": "placed",
    "OrderPaid": "paid",
    "OrderShipped": "shipped",
    "OrderCancelled": "cancelled",
}


def apply(view: dict[str, dict[str, Any]], event: Event) -> None:
    """Overwrite the order's status with whatever arrived last."""
    row = view.setdefault(event.data["order"], {})
    if event.type == "OrderPlaced":
        row.update(customer=event.data["customer"], total=event.data["total"])
    row.update(status=STATUS[event.type], version=event.data["version"])
