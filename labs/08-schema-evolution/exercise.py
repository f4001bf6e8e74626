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

    "Can read" means: any ``data`` valid under ``writer`` is accepted by a
    reader validating against ``reader`` (a closed schema rejects fields it does
    not declare, wrong types and missing required fields), once the reader
    fills in its ``default`` values for fields that are absent. A ``number``
    field accepts integers; an ``integer`` field does not accept every number.

    Pure: the verdict depends only on the two schemas; they are not modified.
    """
    raise NotImplementedError


def compatible(new: Schema, old: Schema, *, mode: str) -> bool:
    """Return whether ``new`` may replace ``old`` under ``mode``.

    ``BACKWARD``: consumers on ``new`` read events written under ``old``.
    ``FORWARD``: consumers still on ``old`` read events written under ``new``.
    ``FULL``: both. The verdicts must agree with the schema registry's
    (``eventlab.schema``) on any change of a flat closed schema.
    """
    raise NotImplementedError


def upcast_v1(data: dict[str, Any]) -> dict[str, Any]:
    """Return ``data`` (valid v1) as valid v2: the same order, customer and amount.

    The amount in whole cents (``12.345`` euros is 1235 cents, rounded, not
    truncated); the currency is ``"EUR"`` (v1 had only euros). Pure: the same
    input always gives the same output (duplicates are converted again), and
    ``data`` is not modified.
    """
    raise NotImplementedError


def downcast_v2(data: dict[str, Any]) -> dict[str, Any]:
    """Return ``data`` (valid v2) as valid v1, for consumers not yet upgraded.

    The same order, customer and amount (in euros); a v1 reader rejects any
    field it does not declare. Pure, like :func:`upcast_v1`.
    """
    raise NotImplementedError
