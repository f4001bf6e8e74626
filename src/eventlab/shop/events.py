"""The shop's event types, their JSON Schemas (v1), the stream and the key prefixes.

All shop events travel on one stream, ``{<namespace>:shop}``; each service reads
it under its own consumer group and ignores the types it does not handle. Every
event is about one order (``subject`` = order id) except ``StockAdded``
(``subject`` = ``"stock"``). ``OrderPlaced`` comes from the ``storefront`` (the
customer's side); the orders service accepts it. Every event a service emits carries the extension
``seq``: that service's version of the aggregate, so projections can skip what
they already applied (idempotency by per-aggregate version). Versions start at 1
per (source, subject) and follow log order.

Introduced in lesson 06.
"""

from __future__ import annotations

from typing import Any

from eventlab import schema, streams
from eventlab.envelope import Event

__all__ = [
    "COMMANDS",
    "EVENTS",
    "SCHEMAS",
    "SERVICES",
    "TERMINAL",
    "key",
    "register_schemas",
    "seq_of",
    "stream",
]

SERVICES = ("orders", "inventory", "billing", "courier")
"""The four services; each is also its consumer group name and its key prefix."""

TERMINAL = frozenset({"OrderConfirmed", "OrderCancelled"})
"""The event types that end an order; every order reaches exactly one."""


def stream() -> str:
    """Return the shop's stream key, ``{<namespace>:shop}``."""
    return streams.stream_key("shop")


def key(service: str, *parts: str) -> str:
    """Return a key owned by ``service``: ``{<namespace>:shop}:<service>:<parts…>``.

    A service writes only keys under its own prefix (bounded contexts). Every key
    carries the shop stream's hash tag, so a service's one Lua call (its state,
    its emitted events, the stock it reserves) touches one Redis Cluster slot.
    """
    return ":".join((stream(), service, *parts))


def seq_of(event: Event) -> int | None:
    """Return the per-aggregate version an event carries (extension ``seq``), if any."""
    raw = event.extensions.get("seq")
    return int(raw) if raw is not None and raw.isdigit() else None


def _obj(props: dict[str, Any], required: list[str] | None = None) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": props,
        "required": list(props) if required is None else required,
        "additionalProperties": False,
    }


_ID = {"type": "string", "minLength": 1}
_MONEY = {"type": "integer", "minimum": 0, "description": "cents"}
_ITEMS = {
    "type": "array",
    "items": _obj({"sku": _ID, "qty": {"type": "integer", "minimum": 1}}),
}
_SAGA = {"type": "string", "enum": ["choreography", "orchestration"]}
_ORDER = {
    "order_id": _ID,
    "customer": _ID,
    "items": _ITEMS,
    "total": _MONEY,
    "zone": _ID,
}
_REASON = {"type": "string"}

SCHEMAS: dict[str, dict[str, Any]] = {
    # orders
    "OrderPlaced": _obj({**_ORDER, "saga": _SAGA}),
    "OrderAccepted": _obj({**_ORDER, "saga": _SAGA}),
    "OrderConfirmed": _obj({"order_id": _ID, "courier": _ID}),
    "OrderCancelled": _obj({"order_id": _ID, "reason": _REASON}),
    # inventory
    "StockAdded": _obj({"sku": _ID, "qty": {"type": "integer", "minimum": 1}}),
    "StockReserved": _obj({**_ORDER, "saga": _SAGA}),
    "StockRejected": _obj({"order_id": _ID, "reason": _REASON}),
    "StockReleased": _obj({"order_id": _ID, "items": _ITEMS}),
    # billing
    "PaymentCaptured": _obj({**_ORDER, "saga": _SAGA, "amount": _MONEY}),
    "PaymentDeclined": _obj({"order_id": _ID, "reason": _REASON}),
    "PaymentRefunded": _obj({"order_id": _ID, "amount": _MONEY}),
    # courier
    "CourierAssigned": _obj({"order_id": _ID, "courier": _ID}),
    "CourierUnavailable": _obj({"order_id": _ID, "reason": _REASON}),
    "CourierReleased": _obj({"order_id": _ID, "courier": _ID}),
    # the orchestrator's commands and its timer
    "ReserveStock": _obj(dict(_ORDER)),
    "CapturePayment": _obj(dict(_ORDER)),
    "AssignCourier": _obj(dict(_ORDER)),
    "ReleaseStock": _obj({"order_id": _ID}),
    "RefundPayment": _obj({"order_id": _ID}),
    "StepTimedOut": _obj({"order_id": _ID, "step": {"type": "string"}}),
}
"""Version 1 of every shop event's ``data`` schema (closed content model)."""

COMMANDS = frozenset(
    {"ReserveStock", "CapturePayment", "AssignCourier", "ReleaseStock", "RefundPayment"}
)
"""Messages the orchestrated saga sends to one service (they travel as events on the log)."""

EVENTS = frozenset(SCHEMAS) - COMMANDS
"""Facts: what happened."""


def register_schemas(registry: schema.Registry) -> dict[str, int]:
    """Register every shop schema (idempotent); return type → version registered."""
    return {name: registry.register(name, body) for name, body in SCHEMAS.items()}
