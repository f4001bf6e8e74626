"""The course map (notebooks/README.md) and the rendered index list every lesson as it is."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
LESSONS = sorted(NOTEBOOKS.glob("[0-9][0-9]-*.ipynb"))
ROW = re.compile(r"^\| (\d\d) \| \[[^\]]+\]\(([^)]+)\) \| (\d+) min \|", re.MULTILINE)


def _rows(text: str) -> dict[str, tuple[str, int]]:
    return {m[1]: (m[2], int(m[3])) for m in ROW.finditer(text)}


def _index_text() -> str:
    nb = json.loads((NOTEBOOKS / "index.ipynb").read_text())
    assert all(c["cell_type"] == "markdown" for c in nb["cells"]), "the index is prose only"
    return "\n".join("".join(c["source"]) for c in nb["cells"])


def test_map_lists_thirteen_lessons_in_order():
    """README.md has one row per lesson 00-12, in order, each naming a .ipynb."""
    rows = _rows((NOTEBOOKS / "README.md").read_text())
    assert list(rows) == [f"{n:02d}" for n in range(13)]
    assert all(
        name.startswith(f"{n}-") and name.endswith(".ipynb") for n, (name, _) in rows.items()
    )


def test_index_matches_the_map():
    """index.ipynb (what `eventlab lab` opens first) shows the same lessons, links and times."""
    assert _rows(_index_text()) == _rows((NOTEBOOKS / "README.md").read_text())


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.name)
def test_every_lesson_is_on_the_map_with_its_time(path):
    """Each lesson notebook is linked from the map, with the time its first cell states."""
    name, minutes = _rows((NOTEBOOKS / "README.md").read_text())[path.name[:2]]
    assert name == path.name
    first = "".join(json.loads(path.read_text())["cells"][0]["source"])
    stated = re.search(r"\*\*Time:\*\* about (\d+) minutes", first)
    assert stated, "the first cell states **Time:** about N minutes"
    assert int(stated[1]) == minutes
