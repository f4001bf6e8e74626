"""Regenerate the parts of docs/instructor.md that come from the course map (idempotent).

Between ``<!-- BEGIN GENERATED: NAME -->`` and ``<!-- END GENERATED: NAME -->``
the guide holds :func:`eventlab.course.guide_section` ``(NAME)``: the setup-B
avoid-list, the agendas, the per-lesson talking points and discussion prompts.
Edit ``src/eventlab/course.py``, then run ``python scripts/instructor_guide.py``
(``--check``: exit 1 if the guide is out of date).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

from eventlab import course

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "instructor.md"


def render(text: str) -> str:
    """Return ``text`` with every generated section replaced by its current content."""
    for name in course.GUIDE_SECTIONS:
        block = re.compile(
            rf"(<!-- BEGIN GENERATED: {name} -->\n)(?:.*?\n)?(<!-- END GENERATED: {name} -->)",
            re.DOTALL,
        )
        found = block.search(text)
        if found is None:
            raise SystemExit(f"{GUIDE}: no generated section {name!r}")
        body = course.guide_section(name)
        text = text[: found.start()] + found[1] + body + "\n" + found[2] + text[found.end() :]
    return text


def main(argv: list[str]) -> int:
    """Rewrite the guide (or, with ``--check``, exit 1 when it is out of date)."""
    current = GUIDE.read_text()
    fresh = render(current)
    if fresh == current:
        return 0
    if "--check" in argv:
        print(f"{GUIDE.name} is out of date: run python scripts/instructor_guide.py")  # noqa: T201
        return 1
    GUIDE.write_text(fresh)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
