"""The one error type the kit raises for problems a learner can fix."""

from __future__ import annotations


class EventlabError(Exception):
    """A problem with a one-line explanation and a one-line fix.

    Attributes:
        fix: What to do about it, phrased as an instruction.
    """

    def __init__(self, message: str, *, fix: str) -> None:
        """Store the message and the fix; ``str()`` gives both on one line."""
        super().__init__(message)
        self.fix = fix

    def __str__(self) -> str:
        """Render ``message — fix: …`` on one line."""
        return f"{self.args[0]} — fix: {self.fix}"
