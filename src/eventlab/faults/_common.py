"""What every fault shares: the vocabulary, the directions and the :class:`Applied` handle.

Part of :mod:`eventlab.faults`; import from there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Self

from eventlab._errors import EventlabError
from eventlab.history import History

Direction = Literal["upstream", "downstream", "both"]
"""Which bytes a network fault touches: client → broker, broker → client, or both."""

FAULTS = (
    "latency",
    "bandwidth",
    "reset",
    "partition",
    "pause",
    "kill",
    "restart",
    "kill-consumer",
    "slow-handler",
    "duplicate-burst",
    "out-of-order",
    "poison",
    "schema-invalid",
)
"""The fault vocabulary (docs/faults.md explains each one)."""

_RECORD = "proxy.json"


class FaultError(EventlabError):
    """A fault cannot be applied (no proxy running, bad arguments, no managed broker)."""


@dataclass(slots=True)
class Applied:
    """A fault that is on: leave it on, ``undo()`` it, or use it as a context manager.

    Attributes:
        name: The fault (``"latency"``).
        details: Its arguments, as recorded in the history.
    """

    name: str
    details: dict[str, Any]
    _undo: Callable[[], object] | None = field(default=None, repr=False)
    _history: History | None = field(default=None, repr=False)

    def undo(self) -> None:
        """Turn the fault off (once; later calls do nothing)."""
        undo, self._undo = self._undo, None
        if undo is not None:
            undo()
            if self._history is not None:
                self._history.nemesis(self.name, "stop")

    def __enter__(self) -> Self:
        """Return this handle; the fault is already on."""
        return self

    def __exit__(self, *exc: object) -> None:
        """Turn the fault off."""
        self.undo()


def _applied(
    name: str,
    details: dict[str, Any],
    undo: Callable[[], object] | None,
    history: History | None,
) -> Applied:
    if history is not None:
        history.nemesis(name, "start", **details)
    return Applied(name, details, undo, history)
