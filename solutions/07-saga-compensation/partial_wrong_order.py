"""Lab 07, steps in the wrong order: releases the stock and cancels at once (< 8).

Duplicate-safe and compensates, but on ``PaymentFailed`` it sends
``ReleaseStock`` and ``CancelOrder`` together, so the order is cancelled before
inventory confirmed the release (``StockReleased``). The order check of the
saga's own log catches it.
"""

from __future__ import annotations

TERMINAL_STATES = ("confirmed", "cancelled")


def decide(state, event):
    if state is None and event.type == "OrderPlaced":
        return "reserving", [("ReserveStock", {})]
    if state == "reserving" and event.type == "StockReserved":
        return "charging", [("ChargePayment", {})]
    if state == "reserving" and event.type == "OutOfStock":
        return "cancelled", [("CancelOrder", {"reason": "out of stock"})]
    if state == "charging" and event.type == "PaymentCharged":
        return "confirmed", [("ConfirmOrder", {})]
    if state == "charging" and event.type == "PaymentFailed":
        # compensates, but cancels before the release is confirmed
        return "cancelled", [("ReleaseStock", {}), ("CancelOrder", {"reason": "payment failed"})]
    return state, []
