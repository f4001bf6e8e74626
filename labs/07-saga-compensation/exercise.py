"""Lab 07 — a saga with compensation.

Placing an order spans two services that own their data: inventory reserves
stock, billing charges the payment. There is no distributed transaction: an
orchestrator (the saga) reacts to each event with the next command, and when a
later step fails it *compensates* the earlier ones (releases the stock).

Write :func:`decide`, the saga's state machine for one order. The grader's
runtime stores the state per order, publishes your commands atomically with
the ack, and plays inventory and billing, with failed payments, out-of-stock
items and duplicated deliveries (at-least-once: every event may arrive twice).

The vocabulary. Events the saga receives: ``OrderPlaced`` (from the
storefront); ``StockReserved`` or ``OutOfStock`` (inventory's answer to
``ReserveStock``); ``PaymentCharged`` or ``PaymentFailed`` (billing's answer to
``ChargePayment``); ``StockReleased`` (inventory's answer to ``ReleaseStock``).
Commands it may send: ``ReserveStock``, ``ChargePayment``, ``ReleaseStock``,
``ConfirmOrder``, ``CancelOrder``. Which command follows which event, and in
which states, is yours to design (the notebook's hints help if you want them).
"""

from __future__ import annotations

from typing import Any

from eventlab.envelope import Event

Command = tuple[str, dict[str, Any]]
"""A command to publish: its type and extra data (the runtime adds the order id)."""

TERMINAL_STATES = ("confirmed", "cancelled")


def decide(state: str | None, event: Event) -> tuple[str | None, list[Command]]:
    """Return the order's next state and the commands to send, given ``event``.

    ``state`` is ``None`` before the order's first event; the states are yours
    to name (strings), except the two of :data:`TERMINAL_STATES`.

    Guarantees the grader checks (60 orders, every event possibly delivered twice):

    * **one ending** — every order ends ``"confirmed"`` or ``"cancelled"``,
      having sent exactly one ``ConfirmOrder`` or one ``CancelOrder`` (with
      ``{"reason": ...}``), never both, never twice;
    * **no charge without stock, no stock kept without payment** — payment is
      requested only once stock is reserved; an order whose payment failed gets
      its stock released exactly once, and is cancelled only after inventory
      confirmed the release; stock that was never reserved is never released;
    * **good orders** — stock reserved and payment charged: confirmed, charged once;
    * **idempotent** — an event that does not fit the current state (a
      duplicate, or one arriving after the saga moved on) changes nothing: it
      returns ``(state, [])``; a terminal state never changes again.

    Pure: no I/O, no randomness, no state outside the arguments.
    """
    raise NotImplementedError
