"""Lab 07, a plausible first attempt: duplicate-safe, but forgets to compensate (5 of 8)."""

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
        return "cancelled", [("CancelOrder", {"reason": "payment failed"})]  # stock kept!
    return state, []
