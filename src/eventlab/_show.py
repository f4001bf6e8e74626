"""What a lesson cell shows the learner: the one place library code writes text out.

``course.setup``/``Lesson.done`` (versions, where progress went),
``exercises.check`` (a try-it's feedback) and ``grading.grade`` (the score
table) write their lines here. In a notebook stdout is the cell's output; in a
terminal or a test it is stdout. Commands print in :mod:`eventlab.cli` instead.
"""

from __future__ import annotations

import sys

__all__ = ["show"]


def show(*lines: str) -> None:
    """Write ``lines`` to the learner (the cell's output), one per line."""
    sys.stdout.write("".join(f"{line}\n" for line in lines))
