"""Lab 09, a plausible first attempt: a correct fold, but no version check, no rebuild (3 of 10)."""

from __future__ import annotations

STATUS = {
    "OrderPlaced": "placed",
    "OrderPaid": "paid",
    "OrderShipped": "shipped",
    "OrderCancelled": "cancelled",
}


def apply(view, event):
    if event.type not in STATUS:
        return
    order = event.data["order"]
    updated = {
        **view.get(order, {}),
        "status": STATUS[event.type],
        "version": event.data["version"],
    }
    if event.type == "OrderPlaced":
        updated.update(customer=event.data["customer"], total=event.data["total"])
    view[order] = updated


def rebuild(client, stream, key, *, fold=apply):
    raise NotImplementedError
