"""Notebooks: stored without outputs, and every lesson opens and closes the same way."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
ALL = sorted(
    p
    for folder in ("notebooks", "solutions", "labs", "tests")
    for p in (ROOT / folder).glob("**/*.ipynb")
    if ".ipynb_checkpoints" not in p.parts
)
LESSONS = sorted((ROOT / "notebooks").glob("[0-9][0-9]-*.ipynb"))


@pytest.mark.parametrize("path", ALL, ids=lambda p: str(p.relative_to(ROOT)))
def test_stored_without_outputs(path):
    """A committed notebook has no outputs and no execution counts."""
    nb = json.loads(path.read_text())
    dirty = [
        i
        for i, cell in enumerate(nb["cells"])
        if cell["cell_type"] == "code" and (cell.get("outputs") or cell.get("execution_count"))
    ]
    assert not dirty, f"cells {dirty} have outputs: clear them before committing"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_lesson_shape(path):
    """H1 title, 'You will' bullets and a time first; one setup cell; Summary and Exercises last."""
    nb = json.loads(path.read_text())
    cells = nb["cells"]
    first = "".join(cells[0]["source"])
    assert first.startswith("# "), "a lesson opens with an H1 title"
    assert "You will" in first
    assert "Time:" in first
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    assert f'course.setup("{path.name[:2]}")' in code[0], "the first code cell is the setup"
    prose = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    assert "## Summary" in prose
    assert "## Exercises" in prose
    assert any("assert " in c for c in code), "claims are shown by assertion cells"
    long_cells = [i for i, c in enumerate(code) if len(c.splitlines()) > 16]
    assert not long_cells, f"code cells {long_cells} are longer than ~15 lines"
