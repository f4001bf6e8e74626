"""The billing service: captures payment for an order, refunds it as a compensation.

Which customers' cards are declined is billing's own data (a set under its
prefix), so a lesson can make payments fail on purpose. A refund that arrives
before the capture voids the order: a late capture is declined, never kept.

Introduced in lesson 07.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import redis

from eventlab.envelope import Event
from eventlab.shop import events
from eventlab.shop._service import Decision, Service

__all__ = ["Billing", "decline_cards"]

_CAPTURE = frozenset({"StockReserved", "CapturePayment"})
_REFUND = frozenset({"CourierUnavailable", "RefundPayment"})


def _declined_key() -> str:
    return events.key("billing", "declined")


def decline_cards(client: redis.Redis, customers: Iterable[str], *, declined: bool = True) -> None:
    """Make billing decline (or accept again) the cards of ``customers``."""
    names = list(customers)
    if names:
        (client.sadd if declined else client.srem)(_declined_key(), *names)


class Billing(Service):
    """The billing service (consumer group ``billing``)."""

    name: ClassVar[str] = "billing"
    emits: ClassVar[tuple[str, ...]] = ("PaymentCaptured", "PaymentDeclined", "PaymentRefunded")
    handles: ClassVar[frozenset[str]] = _CAPTURE | _REFUND

    def read_commands(self, event: Event) -> list[tuple[str, tuple[Any, ...]]]:
        """Is this customer's card declined?"""
        if event.type not in _CAPTURE:
            return []
        return [("sismember", (self.own("declined"), event.data["customer"]))]

    def interpret(self, event: Event, results: list[Any]) -> dict[str, Any]:
        """The answer as a bool."""
        if event.type not in _CAPTURE:
            return {}
        return {"declined": bool(results[0])}

    def decide(self, state: dict[str, Any], event: Event, reads: dict[str, Any]) -> Decision:
        """Capture or refund."""
        out = Decision()
        data = event.data
        order_id = data["order_id"]
        status = state.get("status")
        if event.type in _CAPTURE:
            saga = data.get("saga", "orchestration")
            if event.type == "StockReserved" and saga != "choreography":
                return out  # under orchestration billing waits for CapturePayment
            state.setdefault("saga", saga)
            if status == "void":
                out.emit(
                    "PaymentDeclined", {"order_id": order_id, "reason": "order already cancelled"}
                )
            elif status is None and reads["declined"]:
                state["status"] = "declined"
                out.emit("PaymentDeclined", {"order_id": order_id, "reason": "card declined"})
            elif status is None:
                state.update(status="captured", amount=data["total"])
                order = {k: data[k] for k in ("order_id", "customer", "items", "total", "zone")}
                out.emit("PaymentCaptured", {**order, "saga": saga, "amount": data["total"]})
            return out
        if event.type != "RefundPayment" and state.get("saga") != "choreography":
            return out
        if status == "captured":
            state["status"] = "refunded"
            out.emit("PaymentRefunded", {"order_id": order_id, "amount": state["amount"]})
        elif status in {None, "declined"}:
            state["status"] = "void"
            out.emit("PaymentRefunded", {"order_id": order_id, "amount": 0})
        return out
