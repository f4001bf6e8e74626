"""Authoring aid: build a notebook from a percent-format script, without outputs.

``# %% [markdown]`` starts a prose cell (lines prefixed with ``# ``), ``# %%`` a
code cell. ``python scripts/py2nb.py draft.py notebooks/NN-topic.ipynb``. The
.ipynb is what learners open and what is committed; drafts are not kept.
"""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat


def convert(text: str) -> nbformat.NotebookNode:
    """Split ``text`` on ``# %%`` markers into markdown and code cells."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    cells: list[nbformat.NotebookNode] = []
    kind, lines = None, []

    def flush() -> None:
        body = "\n".join(lines).strip("\n")
        if kind == "markdown":
            prose = "\n".join(
                line[2:] if line.startswith("# ") else line.removeprefix("#")
                for line in body.splitlines()
            )
            cells.append(nbformat.v4.new_markdown_cell(prose))
        elif kind == "code" and body:
            cells.append(nbformat.v4.new_code_cell(body))

    for line in text.splitlines():
        if line.startswith("# %%"):
            flush()
            kind, lines = ("markdown" if "[markdown]" in line else "code"), []
        else:
            lines.append(line)
    flush()
    nb.cells = cells
    for i, cell in enumerate(nb.cells):
        cell["id"] = f"c{i:02d}"
    return nb


if __name__ == "__main__":
    source, target = Path(sys.argv[1]), Path(sys.argv[2])
    nbformat.write(convert(source.read_text()), target)
