"""Authoring aid: write each lesson's try-it cells from solutions/lessons/lessonNN.py.

Every ``# TRY IT <id>: <name>`` section of a solutions file is one code cell of
lesson NN. This finds the lesson's cell whose first line is that header and sets
its source to the section with each ``# BEGIN SOLUTION … # END SOLUTION`` block
replaced by ``raise NotImplementedError`` (the labs' markers). To add an
exercise, put a code cell holding just the header line where it belongs in the
lesson, then run ``python scripts/tryit.py``. tests/test_exercises.py fails when
a lesson's cell differs from what this writes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from eventlab import exercises

ROOT = Path(__file__).resolve().parents[1]


def sync(source: Path) -> list[str]:
    """Write the blanks of ``source`` into its lesson; return what changed or is missing."""
    number = source.stem.removeprefix("lesson")
    [lesson] = (ROOT / "notebooks").glob(f"{number}-*.ipynb")
    nb = json.loads(lesson.read_text())
    report = []
    for section in exercises.sections(source.read_text()):
        header = section.source.splitlines()[0]
        cells = [
            c
            for c in nb["cells"]
            if c["cell_type"] == "code" and "".join(c["source"]).splitlines()[:1] == [header]
        ]
        if len(cells) != 1:
            report.append(f"{lesson.name}: {len(cells)} cells start with {header!r} (want 1)")
            continue
        blank = section.blank.rstrip("\n")
        if "".join(cells[0]["source"]) != blank:
            cells[0]["source"] = blank.splitlines(keepends=True)
            report.append(f"{lesson.name}: wrote {section.id}")
    lesson.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")
    return report


def main() -> int:
    """Sync every solutions/lessons/lessonNN.py; exit 1 if a lesson lacks a header cell."""
    lines = [
        line
        for path in sorted((ROOT / "solutions" / "lessons").glob("lesson*.py"))
        for line in sync(path)
    ]
    for line in lines:
        print(line)  # noqa: T201 - an authoring script reports what it did
    return 1 if any("want 1" in line for line in lines) else 0


if __name__ == "__main__":
    sys.exit(main())
