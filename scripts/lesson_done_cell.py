"""Make ``lesson.done()`` the last cell of every lesson (idempotent: run it after any edit).

A workshop counts a lesson as *passed* when its last cell runs: a *Run All*
that stops at a failing cell never gets there. The cell is marked with the tag
``lesson-done``; the script removes any earlier copy (wherever an edit moved
it) and appends one at the end, so running it twice changes nothing.

``python scripts/lesson_done_cell.py [--check]`` (``--check``: exit 1 if a
lesson would change, for tests and CI).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

TAG = "lesson-done"
SOURCE = [
    "# The last cell: reaching it means every cell above ran. In a workshop it records the\n",
    "# lesson as passed for the instructor and says where that went.\n",
    "lesson.done()",
]
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def done_cell(lesson_id: str) -> dict[str, Any]:
    """Return the tagged ``lesson.done()`` code cell of lesson ``lesson_id``."""
    return {
        "cell_type": "code",
        "execution_count": None,
        "id": f"l{lesson_id}-done",
        "metadata": {"tags": [TAG]},
        "outputs": [],
        "source": list(SOURCE),
    }


def apply(path: Path) -> str:
    """Return the notebook text of ``path`` with exactly one done cell, at the end."""
    notebook = json.loads(path.read_text())
    cells = [c for c in notebook["cells"] if TAG not in c.get("metadata", {}).get("tags", [])]
    cells.append(done_cell(path.name[:2]))
    notebook["cells"] = cells
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    """Rewrite every lesson (or, with ``--check``, report those that would change)."""
    check = "--check" in argv
    changed = []
    for path in sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb")):
        text = apply(path)
        if text != path.read_text():
            changed.append(path.name)
            if not check:
                path.write_text(text)
    for name in changed:
        print(("would change " if check else "updated ") + name)  # noqa: T201 - a script reports
    return 1 if check and changed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
