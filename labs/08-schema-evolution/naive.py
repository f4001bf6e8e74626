"""An upcaster that looks right: dollars times 100, as an int.

Not graded and not an answer: the notebook runs it to show the failure this lab
is about (converted events that no longer add up). Your work is in
``exercise.py``.
"""

from __future__ import annotations

from typing import Any


def upcast_v1(data: dict[str, Any]) -> dict[str, Any]:
    """v1 -> v2 with ``int(amount * 100)``: floats like 19.99 lose a cent."""
    return {
        "order": data["order"],
        "customer": data["customer"],
        "amount_cents": int(data["amount"] * 100),
        "currency": "EUR",
    }
