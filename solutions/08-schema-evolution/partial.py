"""Lab 08, a plausible first attempt: only the required-field rule, no downcaster (3 of 10)."""

from __future__ import annotations

from typing import Any

ORDER_PLACED_V1: dict[str, Any] = {
    "type": "object",
    "properties": {
        "order": {"type": "string"},
        "customer": {"type": "string"},
        "amount": {"type": "number"},
    },
    "required": ["order", "customer", "amount"],
    "additionalProperties": False,
}

ORDER_PLACED_V2: dict[str, Any] = {
    "type": "object",
    "properties": {
        "order": {"type": "string"},
        "customer": {"type": "string"},
        "amount_cents": {"type": "integer"},
        "currency": {"type": "string", "default": "EUR"},
    },
    "required": ["order", "customer", "amount_cents", "currency"],
    "additionalProperties": False,
}


def can_read(reader, writer) -> bool:
    writer_required = set(writer.get("required", []))
    return all(
        name in writer_required or "default" in reader["properties"].get(name, {})
        for name in reader.get("required", [])
    )


def compatible(new, old, *, mode) -> bool:
    return can_read(new, old) if mode == "BACKWARD" else can_read(old, new)


def upcast_v1(data):
    return {
        "order": data["order"],
        "customer": data["customer"],
        "amount_cents": round(data["amount"] * 100),
        "currency": "EUR",
    }


def downcast_v2(data):
    raise NotImplementedError
