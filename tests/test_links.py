"""Every relative link in every notebook and Markdown file of the course leads to a file in it."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parent.parent
# [text](target) and [text](<target>), images included; <a href="…"> and <img src="…">.
_MD_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_HTML_LINK = re.compile(r"""<(?:a|img)\b[^>]*\b(?:href|src)=["']([^"']+)["']""", re.IGNORECASE)
_CODE = re.compile(r"```.*?```|`[^`\n]*`", re.DOTALL)


def _documents() -> list[Path]:
    """The tracked (or new, not ignored) notebooks and Markdown files of the repository."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    if listed.returncode == 0:
        names = [ROOT / line for line in listed.stdout.splitlines()]
    else:  # not a git checkout (an unpacked archive): every file but the environment's
        names = [p for p in ROOT.rglob("*") if ".venv" not in p.parts and ".git" not in p.parts]
    return sorted(p for p in names if p.suffix in {".ipynb", ".md"} and p.is_file())


def _text(path: Path) -> str:
    if path.suffix == ".ipynb":
        cells = json.loads(path.read_text())["cells"]
        return "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    return path.read_text()


def links(text: str) -> list[str]:
    """Return the link targets in Markdown ``text`` (code spans and blocks are not links)."""
    prose = _CODE.sub("", text)
    return [m[1] for m in _MD_LINK.finditer(prose)] + [m[1] for m in _HTML_LINK.finditer(prose)]


def dead_links(path: Path) -> list[str]:
    """Return the relative links in ``path`` whose target is missing or outside the repository."""
    dead = []
    for target in links(_text(path)):
        parts = urlsplit(target)
        if parts.scheme or parts.netloc or not parts.path:
            continue  # a web address, or an anchor in the same document
        resolved = (path.parent / unquote(parts.path)).resolve()
        if not resolved.exists() or not resolved.is_relative_to(ROOT):
            dead.append(target)
    return dead


DOCUMENTS = _documents()


def test_link_finder_sees_markdown_and_html_links_and_skips_code():
    """The finder returns [text](target), <a href>, images; not code spans or web addresses."""
    text = (
        "See [the map](index.ipynb#labs) and ![chart](img/a.svg), <a href='../labs/x'>x</a>.\n"
        "`[not](a-link.md)` and\n```\n[nor](this.md)\n```\n[web](https://example.org)"
    )
    assert links(text) == ["index.ipynb#labs", "img/a.svg", "https://example.org", "../labs/x"]


def test_dead_links_are_found(tmp_path):
    """A link to a missing file, or to a file outside the repository, is reported dead."""
    doc = ROOT / "notebooks" / "README.md"
    outside = tmp_path / "outside.md"
    outside.write_text("x")
    probe = doc.parent / "__link_probe__.md"
    probe.write_text(f"[ok](index.ipynb) [gone](nowhere.ipynb) [out]({outside})")
    try:
        assert dead_links(probe) == ["nowhere.ipynb", str(outside)]
    finally:
        probe.unlink()


def test_the_course_has_notebooks_and_readmes_to_check():
    """The walk below covers every lesson, lab notebook and README."""
    names = {p.relative_to(ROOT).as_posix() for p in DOCUMENTS}
    assert {"README.md", "notebooks/README.md", "notebooks/index.ipynb"} <= names
    assert len([n for n in names if n.startswith("notebooks/") and n.endswith(".ipynb")]) >= 14
    assert len([n for n in names if n.startswith("labs/") and n.endswith(".ipynb")]) >= 8


@pytest.mark.parametrize("path", DOCUMENTS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_resolves(path):
    """Each relative link in this notebook or Markdown file names a file in the repository."""
    assert dead_links(path) == []
