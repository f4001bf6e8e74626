"""Lab 08 — schema evolution: a compatibility rule, an upcaster, and a view for old readers.

``OrderPlaced`` v1 carried ``amount`` in euros (a float); v2 carries
``amount_cents`` (an integer) and a ``currency``. Both versions stay in the
stream forever, and consumers upgrade one at a time, so:

* a **compatibility rule** says whether readers on one schema can read events
  written under another (the registry uses such rules to refuse a breaking
  change before it ships);
* an **upcaster** lets new consumers read old (v1) events as v2;
* a **downcaster** lets old consumers, not yet upgraded, read new (v2) events.

Schemas here are flat JSON Schema objects, always closed
(``"additionalProperties": false``), with ``properties`` of type ``string``,
``integer`` or ``number``, a ``required`` list, and optional ``default`` values.
"""

from __future__ import annotations

from typing import Any

Schema = dict[str, Any]

ORDER_PLACED_V1: Schema = {
    "type": "object",
    "properties": {
        "order": {"type": "string"},
        "customer": {"type": "string"},
        "amount": {"type": "number"},
    },
    "required": ["order", "customer", "amount"],
    "additionalProperties": False,
}

ORDER_PLACED_V2: Schema = {
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


def can_read(reader: Schema, writer: Schema) -> bool:
    """Return whether a consumer on ``reader`` can read every event written under ``writer``.

    Three rules (both schemas closed):

    1. every field ``reader`` requires is required by ``writer``, or has a
       ``default`` in ``reader``;
    2. every field ``writer`` declares is declared by ``reader`` (a closed
       reader rejects fields it does not know);
    3. every field both declare has a type the reader accepts: the same type,
       or ``number`` reading ``integer`` (widening); never the reverse.
    """
    raise NotImplementedError


def compatible(new: Schema, old: Schema, *, mode: str) -> bool:
    """Return whether ``new`` may replace ``old`` under ``mode``.

    ``BACKWARD``: consumers on ``new`` read events written under ``old``.
    ``FORWARD``: consumers still on ``old`` read events written under ``new``.
    ``FULL``: both. Use :func:`can_read`.
    """
    raise NotImplementedError


def upcast_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Turn v1 ``data`` into v2: euros to whole cents (rounded), currency ``"EUR"``."""
    raise NotImplementedError


def downcast_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Turn v2 ``data`` into v1 for old consumers: cents back to euros, no currency."""
    raise NotImplementedError
