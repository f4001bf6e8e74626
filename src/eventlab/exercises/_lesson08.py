"""Lesson 08's try-it check: add a field to PaymentCaptured that the contract gate lets through.

The learner returns PaymentCaptured's payload schema with a ``currency`` field.
The check runs it through the registry in the broker under PaymentCaptured's
compatibility mode (nothing is stored) and, when it passes, reads an old
PaymentCaptured event's data through it (defaults filled in).
"""

from __future__ import annotations

import copy
from typing import Any

import jsonschema

from eventlab import shop
from eventlab.course import Lesson
from eventlab.exercises import _shop, exercise

TYPE = "PaymentCaptured"
_OLD = {
    "order_id": "order-1",
    "customer": "ada",
    "items": [{"sku": "apple", "qty": 1}],
    "total": 100,
    "zone": "central",
    "saga": "choreography",
    "amount": 100,
}


@exercise(
    "08-currency",
    title="a currency field that BACKWARD accepts, and old events still read",
    hints=(
        (
            "events already on the log have no currency: give the field a default "
            "(with_field(payload, 'currency', {'type': 'string', 'default': 'EUR'}, "
            "required=True)) or leave it optional"
        ),
        "return the new schema; do not change the other fields",
    ),
)
def currency(answer: Any, lesson: Lesson) -> str | None:
    """Check ``answer(payload)`` against the registry's stored PaymentCaptured versions."""
    registry = _shop.registry(lesson)
    payload = copy.deepcopy(dict(shop.SCHEMAS[TYPE]))
    new = answer(copy.deepcopy(payload))  # a blank raises here
    if not isinstance(new, dict) or "currency" not in new.get("properties", {}):
        return "the schema you returned has no 'currency' property: add one with with_field(...)"
    for name, spec in payload["properties"].items():
        if new["properties"].get(name) != spec:
            return f"you changed the field {name!r}: add currency, leave the others as they are"
    problems = registry.check(TYPE, new)
    if problems:
        rules = ", ".join(sorted({p.rule for p in problems}))
        if "required-field" in rules:
            return (
                f"the gate refuses it ({rules}): every {TYPE} already written lacks currency; "
                "give the required field a default, or make it optional"
            )
        return f"the gate refuses it: {'; '.join(str(p) for p in problems)}"
    old = copy.deepcopy(_OLD)
    spec = new["properties"]["currency"]
    if "currency" in new.get("required", []) and "default" in spec:
        old["currency"] = spec["default"]  # what a v2 reader fills in
    try:
        jsonschema.validate(old, new)
    except jsonschema.ValidationError as error:
        return f"an old {TYPE} does not read through your schema: {error.message}"
    return None
