"""Build the learner's copy of every lab from its solution (the single source).

``solutions/NN-topic/`` is the only hand-edited copy of a lab. :func:`build`
writes ``labs/NN-topic/`` from it: in ``.py`` files every block between
``# BEGIN SOLUTION`` and ``# END SOLUTION`` becomes ``raise NotImplementedError``
(indented like the block), notebooks get the same treatment in code cells and
lose their outputs, and instructor-only files (``partial*.py``, ``score.*``,
caches) are left out. :func:`stale` lists what a build would change, so a test
fails when ``labs/`` is out of date (nbgrader's ``generate_assignment``,
nbdev's "export and fail if out of sync").

A learner works in ``labs/``, so a build never overwrites or deletes their work
silently. In a git checkout, a file of ``labs/`` that git sees as changed (or
new) is the learner's, unless its solution is changed too (a maintainer
rebuilding); outside git every file that differs from the build is. Such files
make :func:`build` stop with the list; ``force=True`` (``--force``) first keeps
each as ``NAME.orig`` beside it. ``git pull`` is safe the same way: git refuses
to overwrite a changed ``exercise.py`` and keeps it when upstream did not touch
it; ``score.json``/``score.md`` are ignored by git and kept by the build.

``eventlab labs build`` runs it; introduced with the first graded lab (L03).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any

from eventlab._errors import EventlabError

__all__ = [
    "BEGIN",
    "END",
    "LabsError",
    "build",
    "clear_outputs",
    "lab_dirs",
    "learner_edits",
    "pack",
    "render",
    "stale",
    "strip_solutions",
]

BEGIN = "# BEGIN SOLUTION"
"""Marker opening a solution block (a whole line, any indentation)."""

END = "# END SOLUTION"
"""Marker closing a solution block."""

_SKIP = re.compile(
    r"^(partial.*\.py|score\.(json|md)|__pycache__|\.ipynb_checkpoints|.*\.pyc|.*\.orig)$"
)
_LAB_DIR = re.compile(r"^\d\d[a-z]?-[a-z0-9-]+$")


class LabsError(EventlabError):
    """A solution cannot be turned into a learner copy (unbalanced markers)."""


def strip_solutions(text: str, *, where: str = "<text>") -> str:
    """Replace each solution block with ``raise NotImplementedError``, indented like it.

    A block runs from a ``# BEGIN SOLUTION`` line to a ``# END SOLUTION`` line.

    Raises:
        LabsError: A block is not closed, or an ``END`` has no ``BEGIN``.
    """
    out: list[str] = []
    inside: int | None = None
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        stripped = line.strip()
        if stripped == BEGIN:
            if inside is not None:
                raise LabsError(
                    f"{where} line {number}: {BEGIN} inside another block (opened line {inside})",
                    fix=f"close the first block with {END}",
                )
            inside = number
            indent = line[: len(line) - len(line.lstrip())]
            out.append(f"{indent}raise NotImplementedError\n")
        elif stripped == END:
            if inside is None:
                raise LabsError(f"{where} line {number}: {END} without {BEGIN}", fix="pair them")
            inside = None
        elif inside is None:
            out.append(line)
    if inside is not None:
        raise LabsError(f"{where} line {inside}: {BEGIN} never closed", fix=f"add {END}")
    return "".join(out)


def clear_outputs(notebook: dict[str, Any]) -> dict[str, Any]:
    """Return ``notebook`` with outputs, execution counts and run metadata cleared."""
    cells = []
    for original in notebook.get("cells", []):
        cell = dict(original)
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
            meta = dict(cell.get("metadata", {}))
            meta.pop("execution", None)
            cell["metadata"] = meta
        cells.append(cell)
    return {**notebook, "cells": cells}


def _render_notebook(text: str, where: str) -> str:
    notebook = clear_outputs(json.loads(text))
    for cell in notebook["cells"]:
        if cell.get("cell_type") != "code":
            continue
        source = cell.get("source", "")
        joined = "".join(source) if isinstance(source, list) else source
        stripped = strip_solutions(joined, where=where)
        cell["source"] = stripped.splitlines(keepends=True)
    return json.dumps(notebook, indent=1, ensure_ascii=False) + "\n"


def render(path: Path) -> bytes | None:
    """Return the learner copy of one solution file, or ``None`` if it is not copied."""
    if _SKIP.match(path.name):
        return None
    if path.suffix == ".py":
        return strip_solutions(path.read_text(), where=str(path)).encode()
    if path.suffix == ".ipynb":
        return _render_notebook(path.read_text(), str(path)).encode()
    return path.read_bytes()


def lab_dirs(source: str | Path = "solutions") -> list[Path]:
    """Return the lab folders under ``source`` (``NN-topic`` or ``NNa-topic``), sorted."""
    root = Path(source)
    return sorted(p for p in root.iterdir() if p.is_dir() and _LAB_DIR.match(p.name))


def _planned(source: Path, dest: Path) -> dict[Path, bytes]:
    planned: dict[Path, bytes] = {}
    for lab in lab_dirs(source):
        for path in sorted(lab.rglob("*")):
            if not path.is_file():
                continue
            relative = path.relative_to(source)
            if any(_SKIP.match(part) for part in relative.parts):
                continue
            content = render(path)
            if content is not None:
                planned[dest / relative] = content
    return planned


def stale(*, source: str | Path = "solutions", dest: str | Path = "labs") -> list[Path]:
    """Return the files under ``dest`` that :func:`build` would write, change or delete."""
    source, dest = Path(source), Path(dest)
    planned = _planned(source, dest)
    changed = [p for p, content in planned.items() if not p.is_file() or p.read_bytes() != content]
    existing = {p for p in dest.rglob("*") if p.is_file()} if dest.is_dir() else set()
    ignored = {p for p in existing if any(_SKIP.match(part) for part in p.parts)}
    extra = sorted(existing - set(planned) - ignored)
    return sorted(changed) + extra


def _git_changed(folder: Path, paths: list[Path]) -> set[Path] | None:
    """Which of ``paths`` git sees as modified or untracked; ``None`` outside a git work tree."""
    try:
        top = subprocess.run(  # noqa: S603 - git with our own paths
            ["git", "-C", str(folder), "rev-parse", "--show-toplevel"],  # noqa: S607 - git on PATH
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        status = ["git", "-C", top, "status", "--porcelain=v1", "-z", "--untracked-files=all"]
        listed = subprocess.run(  # noqa: S603 - git with our own paths
            [*status, "--", *(str(p.resolve()) for p in paths)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    entries = iter(listed.split("\0"))
    changed = set()
    for entry in entries:
        if len(entry) < 4:  # noqa: PLR2004 - "XY path"
            continue
        changed.add((Path(top) / entry[3:]).resolve())
        if entry[0] in "RC":
            next(entries, None)  # a rename's second path
    return changed


def learner_edits(*, source: str | Path = "solutions", dest: str | Path = "labs") -> list[Path]:
    """Return the files under ``dest`` that a build would replace or delete but are the learner's.

    In a git checkout: changed or untracked in git while their solution file is
    not changed. Outside git: every existing file the build would change.
    """
    source, dest = Path(source), Path(dest)
    existing = [p for p in stale(source=source, dest=dest) if p.is_file()]
    if not existing:
        return []
    solutions = [source / p.relative_to(dest) for p in existing]
    changed = _git_changed(dest, existing + [p for p in solutions if p.exists()])
    if changed is None:
        return existing
    return [
        path
        for path, solution in zip(existing, solutions, strict=True)
        if path.resolve() in changed and solution.resolve() not in changed
    ]


def build(
    *, source: str | Path = "solutions", dest: str | Path = "labs", force: bool = False
) -> list[Path]:
    """Write ``dest/NN-topic/`` for every ``source/NN-topic/``; return the files changed.

    Files in a lab folder of ``dest`` that no solution produces are deleted
    (a learner's ``score.json`` and caches are kept).

    Args:
        source: The solutions folder.
        dest: The learner's labs folder.
        force: Replace the learner's work too, keeping each such file as ``NAME.orig``.

    Raises:
        LabsError: The build would replace or delete the learner's work (see
            :func:`learner_edits`) and ``force`` is not set; nothing was written.
    """
    source, dest = Path(source), Path(dest)
    mine = learner_edits(source=source, dest=dest)
    if mine and not force:
        names = ", ".join(str(p) for p in mine)
        raise LabsError(
            f"labs build would overwrite your work: {names}",
            fix="commit or move it, or run `eventlab labs build --force` (keeps NAME.orig)",
        )
    for path in mine:
        shutil.copy2(path, path.with_name(path.name + ".orig"))
    changed = stale(source=source, dest=dest)
    planned = _planned(source, dest)
    for path in changed:
        if path in planned:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(planned[path])
        else:
            path.unlink()
    for folder in sorted(dest.glob("*"), reverse=True):
        if folder.is_dir() and not (source / folder.name).is_dir() and _LAB_DIR.match(folder.name):
            shutil.rmtree(folder)
    return changed


_PACK_LEFT_OUT = frozenset({"solutions", "tests", ".git", ".venv", ".lock-venv", ".eventlab"})
_PACK_JUNK = re.compile(
    r"^(__pycache__|\.ipynb_checkpoints|\.\w+_cache|.*\.egg-info|score\.(json|md)|.*\.pyc)$"
)


def _tracked(root: Path) -> list[Path]:
    """The files of the checkout at ``root``: git's list when it is a git checkout, else a walk."""
    if (root / ".git").exists() and shutil.which("git"):
        listed = subprocess.run(  # noqa: S603 - fixed argv, no shell
            ["git", "-C", str(root), "ls-files", "-z"],  # noqa: S607 - git from PATH, as a user runs it
            capture_output=True,
            check=False,
        )
        if listed.returncode == 0:
            names = [n for n in listed.stdout.decode().split("\0") if n]
            return sorted(Path(n) for n in names if (root / n).is_file())
    return sorted(p.relative_to(root) for p in root.rglob("*") if p.is_file())


def pack(
    *,
    root: str | Path = ".",
    dest: str | Path = "eventlab-learner.tar.gz",
    spot_the_bug: bool = False,
) -> list[str]:
    """Write the learners' bundle: the course without ``solutions/``; return its member names.

    For instructors who grade for credit: every clone of the repository holds the
    lab answers in ``solutions/``, the bundle does not (nor ``tests/``, which
    grade the solutions). The labs, lessons, docs and the package are in it, so
    ``make lab`` works from the unpacked folder. With ``spot_the_bug``, each
    lab's partial solutions (almost right, one bug each) are added as
    ``spot-the-bug/NN-topic/partial*.py`` for a discussion exercise.

    Raises:
        LabsError: ``labs/`` is out of date with ``solutions/`` (a stale bundle
            would ship old exercises).
    """
    root = Path(root).resolve()
    out_of_date = stale(source=root / "solutions", dest=root / "labs")
    if out_of_date:
        raise LabsError(
            f"labs/ is out of date with solutions/ ({len(out_of_date)} file(s))",
            fix="run `eventlab labs build` first, then pack again",
        )
    members: list[str] = []
    dest = Path(dest).resolve()
    with tarfile.open(dest, "w:gz") as bundle:
        for rel in _tracked(root):
            if rel.parts[0] in _PACK_LEFT_OUT or any(_PACK_JUNK.match(p) for p in rel.parts):
                continue
            if root / rel == dest:
                continue
            bundle.add(root / rel, arcname=f"eventlab/{rel.as_posix()}", recursive=False)
            members.append(rel.as_posix())
        if spot_the_bug:
            for lab in lab_dirs(root / "solutions"):
                for partial in sorted(lab.glob("partial*.py")):
                    name = f"spot-the-bug/{lab.name}/{partial.name}"
                    bundle.add(partial, arcname=f"eventlab/{name}", recursive=False)
                    members.append(name)
    return members
