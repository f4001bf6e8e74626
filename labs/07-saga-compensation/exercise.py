"""Lab 07 — a saga with compensation.

Placing an order spans two services that own their data: inventory reserves
stock, billing charges the payment. There is no distributed transaction: an
orchestrator (the saga) reacts to each event with the next command, and when a
later step fails it *compensates* the earlier ones (releases the stock).

Write :func:`decide`, the saga's state machine for one order. The grader's
runtime stores the state per order, publishes your commands atomically with
the ack, and plays inventory and billing, with failed payments, out-of-stock
items and duplicated deliveries (at-least-once: every event may arrive twice).

The flow::

    OrderPlaced      ─► ReserveStock                      state "reserving"
    StockReserved    ─► ChargePayment                     state "charging"
    OutOfStock       ─► CancelOrder (reason)              state "cancelled"
    PaymentCharged   ─► ConfirmOrder                      state "confirmed"
    PaymentFailed    ─► ReleaseStock  (compensation)      state "compensating"
    StockReleased    ─► CancelOrder (reason)              state "cancelled"
"""

from __future__ import annotations

from typing import Any

from eventlab.envelope import Event

Command = tuple[str, dict[str, Any]]
"""A command to publish: its type and extra data (the runtime adds the order id)."""

TERMINAL_STATES = ("confirmed", "cancelled")


def decide(state: str | None, event: Event) -> tuple[str | None, list[Command]]:
    """Return the order's next state and the commands to send, given ``event``.

    ``state`` is ``None`` before the order's first event. An event that does
    not fit the current state (a duplicate, or one that arrives after the saga
    moved on) must change nothing: return ``(state, [])``. A terminal state
    never changes again. ``CancelOrder`` carries ``{"reason": ...}``.
    """
    raise NotImplementedError
