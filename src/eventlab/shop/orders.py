"""The orders service: accepts orders at once, and decides each order's one terminal state.

Under **choreography** it only listens: every other service reacts to the events
before it, and orders confirms when a courier is assigned, or cancels once the
compensations a failure needs have happened. Under **orchestration** it is the
saga's orchestrator: it sends one command per step (``ReserveStock``,
``CapturePayment``, ``AssignCourier``), arms a per-step deadline, and on a failure
or a timeout sends the compensating commands (``ReleaseStock``, ``RefundPayment``).

Either way the decision is a fold over the order's events, insensitive to their
order, so duplicates and reordering cannot yield two terminal states.

Introduced in lessons 06 (accepted at once) and 07 (sagas).
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

import redis.asyncio

from eventlab import schema
from eventlab.envelope import Event
from eventlab.shop import events
from eventlab.shop._service import Decision, Service

__all__ = ["DEFAULT_STEP_TIMEOUTS", "ORDER_FIELDS", "Orders"]

ORDER_FIELDS = ("order_id", "customer", "items", "total", "zone")
"""The order's own fields, carried by OrderAccepted and the saga's commands."""

DEFAULT_STEP_TIMEOUTS = {"reserve": 5.0, "payment": 5.0, "courier": 5.0}
"""Seconds the orchestrator waits for each step's reply before compensating."""

# choreography: which compensations a failure needs before the order can be cancelled
_CHOREO_NEEDS = {
    "StockRejected": [],
    "PaymentDeclined": ["released"],
    "CourierUnavailable": ["released", "refunded"],
}
# orchestration: what to send when a step fails or times out
_COMPENSATE = {
    "reserve": ["ReleaseStock"],
    "payment": ["ReleaseStock", "RefundPayment"],
    "courier": ["ReleaseStock", "RefundPayment"],
}
_NEED_OF = {"ReleaseStock": "released", "RefundPayment": "refunded"}
_REPLIES = {
    "StockReserved": "reserve",
    "StockRejected": "reserve",
    "PaymentCaptured": "payment",
    "PaymentDeclined": "payment",
    "CourierAssigned": "courier",
    "CourierUnavailable": "courier",
}


class Orders(Service):
    """The orders service (consumer group ``orders``).

    Args:
        client: An asyncio client.
        registry: The schema registry.
        step_timeouts: Seconds per orchestrated step (``reserve``, ``payment``, ``courier``).
    """

    name: ClassVar[str] = "orders"
    emits: ClassVar[tuple[str, ...]] = (
        "OrderAccepted",
        "OrderConfirmed",
        "OrderCancelled",
        "ReserveStock",
        "CapturePayment",
        "AssignCourier",
        "ReleaseStock",
        "RefundPayment",
        "StepTimedOut",
    )
    handles: ClassVar[frozenset[str]] = frozenset(
        {"OrderPlaced", "StepTimedOut", "StockReleased", "PaymentRefunded", *_REPLIES}
    )

    def __init__(
        self,
        client: redis.asyncio.Redis,
        registry: schema.Registry,
        *,
        step_timeouts: dict[str, float] | None = None,
    ) -> None:
        """Bind to a broker."""
        super().__init__(client, registry)
        self.step_timeouts = {**DEFAULT_STEP_TIMEOUTS, **(step_timeouts or {})}
        self.deadlines = events.key("orders", "deadlines")

    def interpret(self, event: Event, results: list[Any]) -> dict[str, Any]:  # noqa: ARG002
        """The orchestrator reads the clock once per decision (deadlines)."""
        return {"now": time.time()}

    def decide(  # noqa: C901, PLR0912 - one branch per event type reads best
        self, state: dict[str, Any], event: Event, reads: dict[str, Any]
    ) -> Decision:
        """Fold one event into the order and say what follows."""
        out = Decision()
        data, kind = event.data, event.type
        orchestrated = state.get("saga") == "orchestration"
        if kind == "OrderPlaced":
            if "order" in state:
                return out  # the same order placed twice (a retry): accepted once
            order = {name: data[name] for name in ORDER_FIELDS}
            state.update(order=order, saga=data["saga"], status="accepted", needs=[])
            out.emit("OrderAccepted", {**order, "saga": data["saga"]})
            if data["saga"] == "orchestration":
                self._step(state, out, "reserve", "ReserveStock", reads["now"])
            return out
        step = _REPLIES.get(kind)
        if orchestrated and step is not None and state.get("step") == step:
            out.writes.append(("zrem", self.deadlines, f"{data['order_id']}|{step}"))
            state["step"] = None
        if kind == "StockReserved":
            state["reserved"] = True
            if orchestrated and not state.get("failure"):
                self._step(state, out, "payment", "CapturePayment", reads["now"])
        elif kind == "PaymentCaptured":
            state["paid"] = True
            if orchestrated and not state.get("failure"):
                self._step(state, out, "courier", "AssignCourier", reads["now"])
        elif kind == "CourierAssigned":
            state["courier"] = data["courier"]
        elif kind == "StockReleased":
            state["released"] = True
        elif kind == "PaymentRefunded":
            state["refunded"] = True
        elif kind in _CHOREO_NEEDS:
            self._fail(state, out, kind, data["reason"], step or "")
        elif (
            kind == "StepTimedOut"
            and orchestrated
            and state.get("step") == data["step"]
            and not state.get("failure")
        ):
            state["step"] = None
            self._fail(state, out, kind, f"timed out in step {data['step']}", data["step"])
        self._settle(state, out, data["order_id"])
        return out

    def _step(
        self, state: dict[str, Any], out: Decision, step: str, command: str, now: float
    ) -> None:
        state["step"] = step
        out.emit(command, dict(state["order"]))
        deadline = now + self.step_timeouts[step]
        out.writes.append(
            ("zadd", self.deadlines, {f"{state['order']['order_id']}|{step}": deadline})
        )

    def _fail(
        self, state: dict[str, Any], out: Decision, kind: str, reason: str, step: str
    ) -> None:
        if state.get("failure") or state.get("status") in {"confirmed", "cancelled"}:
            return
        state["failure"] = reason
        if state.get("saga") != "orchestration":
            state["needs"] = list(_CHOREO_NEEDS[kind])
            return
        # a reply says what happened: undo exactly that; a timeout cannot tell, so it undoes
        # the step too (a late reply then meets a voided order or is itself undone)
        if kind == "StepTimedOut":
            commands = _COMPENSATE[step]
        else:
            commands = [c for c, need in _NEED_OF.items() if need in _CHOREO_NEEDS[kind]]
        state["needs"] = [_NEED_OF[c] for c in commands]
        for command in commands:
            out.emit(command, {"order_id": state["order"]["order_id"]})

    def _settle(self, state: dict[str, Any], out: Decision, order_id: str) -> None:
        if state.get("status") != "accepted":
            return  # not placed yet (reordered), or already terminal: decided once
        if state.get("failure"):
            if all(state.get(need) for need in state["needs"]):
                state["status"] = "cancelled"
                out.emit("OrderCancelled", {"order_id": order_id, "reason": state["failure"]})
        elif state.get("courier"):
            state["status"] = "confirmed"
            out.emit("OrderConfirmed", {"order_id": order_id, "courier": state["courier"]})
