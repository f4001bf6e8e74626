"""The courier service: assigns a courier to a paid order, or says none is available.

Which delivery zones have no courier is courier's own data (a set under its
prefix), so a lesson can make the last step fail and watch both compensations.

A courier must not stay assigned to a cancelled order (lesson 07, exercise 1: an
orchestrated courier step timed out, the order was cancelled, and the courier
service, back up, answered the ``AssignCourier`` waiting on the log). So courier
also reads ``OrderCancelled``: a courier it holds for that order is released
(``CourierReleased``, its own compensation), and an order cancelled before any
assignment is voided, so a late ``AssignCourier`` assigns nobody.

Introduced in lesson 07.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable
from typing import Any, ClassVar

import redis

from eventlab.envelope import Event
from eventlab.shop import events
from eventlab.shop._service import Decision, Service

__all__ = ["COURIERS", "Courier", "close_zones"]

COURIERS = 7
"""Couriers on duty per open zone (an order's courier is chosen by a stable hash)."""

_ASSIGN = frozenset({"PaymentCaptured", "AssignCourier"})


def _closed_key() -> str:
    return events.key("courier", "closed-zones")


def close_zones(client: redis.Redis, zones: Iterable[str], *, closed: bool = True) -> None:
    """Make ``zones`` have no courier available (or open them again)."""
    names = list(zones)
    if names:
        (client.sadd if closed else client.srem)(_closed_key(), *names)


class Courier(Service):
    """The courier service (consumer group ``courier``)."""

    name: ClassVar[str] = "courier"
    emits: ClassVar[tuple[str, ...]] = ("CourierAssigned", "CourierUnavailable", "CourierReleased")
    handles: ClassVar[frozenset[str]] = _ASSIGN | {"OrderCancelled"}

    def read_commands(self, event: Event) -> list[tuple[str, tuple[Any, ...]]]:
        """Read whether the order's zone is closed (nothing, for a cancellation)."""
        if event.type == "OrderCancelled":
            return []
        return [("sismember", (self.own("closed-zones"), event.data["zone"]))]

    def interpret(self, event: Event, results: list[Any]) -> dict[str, Any]:
        """The answer as a bool."""
        if event.type == "OrderCancelled":
            return {}
        return {"closed": bool(results[0])}

    def decide(self, state: dict[str, Any], event: Event, reads: dict[str, Any]) -> Decision:
        """Assign a courier once; release it (or void the order) when the order is cancelled."""
        out = Decision()
        data = event.data
        if event.type == "OrderCancelled":
            if state.get("status") == "assigned":
                state["status"] = "released"
                out.emit(
                    "CourierReleased", {"order_id": data["order_id"], "courier": state["courier"]}
                )
            elif state.get("status") is None:
                state["status"] = "void"  # cancelled first: a late AssignCourier assigns nobody
            return out
        if event.type == "PaymentCaptured" and data.get("saga") != "choreography":
            return out  # under orchestration courier waits for AssignCourier
        if state.get("status") is not None:
            return out
        if reads["closed"]:
            state["status"] = "unavailable"
            out.emit(
                "CourierUnavailable",
                {"order_id": data["order_id"], "reason": f"no courier in zone {data['zone']}"},
            )
        else:
            number = zlib.crc32(data["order_id"].encode()) % COURIERS + 1
            state.update(status="assigned", courier=f"courier-{number}")
            out.emit("CourierAssigned", {"order_id": data["order_id"], "courier": state["courier"]})
        return out
