"""Learner copies built from solutions: markers stripped, outputs cleared, labs/ kept in sync."""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from eventlab import cli, grading, labs

ROOT = Path(__file__).resolve().parent.parent
SOLUTIONS = ROOT / "solutions"
LAB_IDS = [p.name for p in labs.lab_dirs(SOLUTIONS)]

SOURCE = '''def f(x):
    """Doc."""
    setup = 1
    # BEGIN SOLUTION
    return x + setup
    # END SOLUTION


def g():
    if True:
        # BEGIN SOLUTION
        return 2
        # END SOLUTION
'''


def test_strip_solutions_replaces_blocks_keeping_indent():
    """Each block becomes one `raise NotImplementedError` at the block's indentation."""
    out = labs.strip_solutions(SOURCE)
    assert "return x + setup" not in out
    assert "return 2" not in out
    assert "SOLUTION" not in out
    assert "    setup = 1\n    raise NotImplementedError\n" in out
    assert "        raise NotImplementedError\n" in out
    ast.parse(out)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("# BEGIN SOLUTION\nx = 1\n", "never closed"),
        ("x = 1\n# END SOLUTION\n", "without"),
        ("# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION\n", "inside another"),
    ],
)
def test_unbalanced_markers_are_errors(text, problem):
    """A missing or nested marker is refused with the line number, never silently copied."""
    with pytest.raises(labs.LabsError, match=problem):
        labs.strip_solutions(text, where="x.py")


def test_clear_outputs():
    """Outputs and execution counts are dropped from code cells; markdown is untouched."""
    notebook = {
        "cells": [
            {"cell_type": "code", "source": "1", "outputs": [{"x": 1}], "execution_count": 3,
             "metadata": {"execution": {"t": 1}, "tags": ["a"]}},
            {"cell_type": "markdown", "source": "# hi", "metadata": {}},
        ],
    }  # fmt: skip
    cleared = labs.clear_outputs(notebook)
    code, markdown = cleared["cells"]
    assert code["outputs"] == []
    assert code["execution_count"] is None
    assert code["metadata"] == {"tags": ["a"]}
    assert markdown == notebook["cells"][1]


def _solution_tree(root: Path) -> Path:
    lab = root / "solutions" / "01-demo"
    lab.mkdir(parents=True)
    (lab / "exercise.py").write_text(SOURCE)
    (lab / "checks.py").write_text("SEED = 1\n")
    (lab / "partial.py").write_text("print('instructor only')\n")
    notebook = {
        "cells": [
            {"cell_type": "code", "metadata": {}, "execution_count": 1,
             "outputs": [{"output_type": "stream", "name": "stdout", "text": "5"}],
             "source": ["x = 2\n", "# BEGIN SOLUTION\n", "y = x * 2\n", "# END SOLUTION\n"]},
        ],
        "metadata": {}, "nbformat": 4, "nbformat_minor": 5,
    }  # fmt: skip
    (lab / "01-demo.ipynb").write_text(json.dumps(notebook))
    return root / "solutions"


def test_build_writes_learner_copies(tmp_path):
    """build() strips .py and notebooks, clears outputs, leaves partial.py out, is idempotent."""
    source = _solution_tree(tmp_path)
    dest = tmp_path / "labs"
    changed = labs.build(source=source, dest=dest)
    lab = dest / "01-demo"
    assert sorted(p.name for p in lab.iterdir()) == ["01-demo.ipynb", "checks.py", "exercise.py"]
    assert len(changed) == 3
    assert "raise NotImplementedError" in (lab / "exercise.py").read_text()
    cell = json.loads((lab / "01-demo.ipynb").read_text())["cells"][0]
    assert cell["outputs"] == []
    assert "".join(cell["source"]) == "x = 2\nraise NotImplementedError\n"
    assert labs.build(source=source, dest=dest) == []
    assert labs.stale(source=source, dest=dest) == []


def test_stale_sees_edits_and_strays(tmp_path):
    """A hand edit or a stray file in labs/ is out of date; a learner's score.json is not."""
    source = _solution_tree(tmp_path)
    dest = tmp_path / "labs"
    labs.build(source=source, dest=dest)
    (dest / "01-demo" / "exercise.py").write_text("edited by hand\n")
    (dest / "01-demo" / "stray.py").write_text("")
    (dest / "01-demo" / "score.json").write_text("{}")
    assert labs.stale(source=source, dest=dest) == [
        dest / "01-demo" / "exercise.py",
        dest / "01-demo" / "stray.py",
    ]
    with pytest.raises(labs.LabsError, match="overwrite your work"):
        labs.build(source=source, dest=dest)  # outside git, a differing file is the learner's
    assert (dest / "01-demo" / "exercise.py").read_text() == "edited by hand\n"
    labs.build(source=source, dest=dest, force=True)
    assert not (dest / "01-demo" / "stray.py").exists()
    assert (dest / "01-demo" / "score.json").exists()
    assert "NotImplementedError" in (dest / "01-demo" / "exercise.py").read_text()
    assert (dest / "01-demo" / "exercise.py.orig").read_text() == "edited by hand\n"
    assert labs.stale(source=source, dest=dest) == []


def test_repository_labs_are_up_to_date():
    """labs/ is exactly what `eventlab labs build` makes from solutions/ (run it if this fails)."""
    assert LAB_IDS, "no labs under solutions/"
    assert labs.stale(source=SOLUTIONS, dest=ROOT / "labs") == []


def test_cli_build_check(tmp_path, capsys):
    """`eventlab labs build --check` exits 1 and names the file while labs/ is out of date."""
    source = _solution_tree(tmp_path)
    dest = tmp_path / "labs"
    args = ["labs", "build", "--source", str(source), "--dest", str(dest)]
    assert cli.main([*args, "--check"]) == 1
    assert "exercise.py" in capsys.readouterr().out
    assert cli.main(args) == 0
    assert "3 file(s) written" in capsys.readouterr().out
    assert cli.main([*args, "--check"]) == 0


@pytest.mark.parametrize("lab", LAB_IDS)
def test_every_lab_is_complete(lab):
    """Each lab has exercise, checks with points and hints, a partial, an output-free notebook."""
    folder = SOLUTIONS / lab
    assert labs.BEGIN in (folder / "exercise.py").read_text()
    assert (folder / "partial.py").is_file()
    checks = grading.collect([folder / "checks.py"])
    assert len(checks) >= 3
    assert all(c.points > 0 and c.hint for c in checks)
    notebooks = list(folder.glob("*.ipynb"))
    assert notebooks
    for path in notebooks:
        cells = json.loads(path.read_text())["cells"]
        assert all(not c.get("outputs") for c in cells if c["cell_type"] == "code")
        assert any("grade()" in "".join(c["source"]) for c in cells)
    generated = ROOT / "labs" / lab
    assert not (generated / "partial.py").exists()
    assert labs.BEGIN not in (generated / "exercise.py").read_text()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("variant", "expected"), [("solutions", "score 8/8"), ("labs", "score 0/8")]
)
def test_lab_notebook_runs_and_grades(variant, expected, broker, tmp_path, monkeypatch):
    """The walkthrough runs top to bottom unattended and its grade() cell prints the score."""
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    folder = tmp_path / "03-idempotent-consumer"
    shutil.copytree(ROOT / variant / folder.name, folder, ignore=shutil.ignore_patterns("score.*"))
    monkeypatch.setenv("REDIS_URL", broker.url)
    notebook = nbformat.read(folder / f"{folder.name}.ipynb", as_version=4)
    nbclient.NotebookClient(
        notebook, timeout=60, resources={"metadata": {"path": str(folder)}}
    ).execute()
    printed = "".join(
        output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", [])
    )
    assert expected in printed
    assert (folder / "score.json").is_file()


RECIPE_WORDS = re.compile(
    r"\b(XADD|XACK|XAUTOCLAIM|XCLAIM|XRANGE|XREADGROUP|XINFO|XDEL|XPENDING|HSET|HINCRBY|HGETALL|"
    r"HDEL|SADD|SISMEMBER|RENAME|MULTI|EXEC|EVAL|EVALSHA|pipeline\(|register_script)\b"
)


def _docstrings(path: Path) -> list[tuple[str, str]]:
    tree = ast.parse(path.read_text())
    nodes = [tree, *(n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef))]
    return [(getattr(n, "name", "module"), ast.get_docstring(n) or "") for n in nodes]


@pytest.mark.parametrize("lab", LAB_IDS)
def test_exercise_states_contracts_not_recipes(lab):
    """The learner's exercise.py says what must hold, never which Redis commands to send."""
    recipes = [
        (name, sorted(set(RECIPE_WORDS.findall(doc))))
        for name, doc in _docstrings(ROOT / "labs" / lab / "exercise.py")
        if RECIPE_WORDS.search(doc)
    ]
    assert not recipes, f"docstrings name commands (move them to the notebook's hints): {recipes}"


def _cells(lab: str, variant: str = "solutions") -> list[dict]:
    return json.loads((ROOT / variant / lab / f"{lab}.ipynb").read_text())["cells"]


@pytest.mark.parametrize("lab", LAB_IDS)
def test_lab_notebook_has_three_hint_tiers(lab):
    """Three collapsed hint tiers (idea, commands, skeleton), after the failure is shown."""
    cells = _cells(lab)
    text = ["".join(c["source"]) for c in cells]
    hints = [i for i, t in enumerate(text) if t.startswith("## Hints")]
    assert len(hints) == 1, "one '## Hints' markdown cell"
    tiers = re.findall(r"<details>\s*<summary>Hint (\d) — ([^<]+)</summary>", text[hints[0]])
    assert [n for n, _ in tiers] == ["1", "2", "3"]
    assert [t.split()[-1] for _, t in tiers] == ["idea", "commands", "skeleton"]
    assert text[hints[0]].count("</details>") == 3, "every tier is collapsed until asked for"
    fail = [i for i, t in enumerate(text) if t.startswith("## See it fail first")]
    assert len(fail) == 1, "one '## See it fail first' section"
    assert cells[fail[0] + 1]["cell_type"] == "code", "the failure is a cell the learner runs"
    assert "naive" in text[fail[0] + 1], "it runs a naive version (naive.py, or the package's)"
    assert "assert " in text[fail[0] + 1], "an assertion pins the failure it shows"
    grade_cell = next(i for i, t in enumerate(text) if "grade()" in t)
    assert fail[0] < hints[0] < grade_cell
    assert (ROOT / "labs" / lab / "naive.py").is_file(), "the naive version ships with the lab"


@pytest.mark.slow
@pytest.mark.parametrize("lab", LAB_IDS)
def test_lab_notebook_shows_the_failure_first(lab, broker, tmp_path, monkeypatch):
    """The learner's copy runs unattended up to grading: the failure is shown, blanks say so."""
    nbclient = pytest.importorskip("nbclient")
    nbformat = pytest.importorskip("nbformat")
    folder = tmp_path / lab
    shutil.copytree(ROOT / "labs" / lab, folder, ignore=shutil.ignore_patterns("score.*"))
    monkeypatch.setenv("REDIS_URL", broker.url)
    monkeypatch.setenv("EVENTLAB_NAMESPACE", f"nbfail-{lab}")
    notebook = nbformat.read(folder / f"{lab}.ipynb", as_version=4)
    notebook.cells = [c for c in notebook.cells if "grade()" not in c.source]
    nbclient.NotebookClient(
        notebook, timeout=60, resources={"metadata": {"path": str(folder)}}
    ).execute()
    printed = "".join(
        output.get("text", "") for cell in notebook.cells for output in cell.get("outputs", [])
    )
    assert "not implemented yet" in printed


def _git(folder, *args):
    subprocess.run(
        ["git", "-C", str(folder), "-c", "user.name=t", "-c", "user.email=t@localhost", *args],
        check=True,
        capture_output=True,
    )


def test_build_in_git_replaces_generated_files_and_keeps_the_learners_work(tmp_path, capsys):
    """In git: a committed lab file is rebuilt; one the learner edited stops the build (exit 2)."""
    source = _solution_tree(tmp_path)
    dest = tmp_path / "labs"
    labs.build(source=source, dest=dest)
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "course")
    # a maintainer changes a solution and rebuilds (twice): the generated copy follows
    (source / "01-demo" / "checks.py").write_text("SEED = 2\n")
    assert labs.build(source=source, dest=dest) == [dest / "01-demo" / "checks.py"]
    (source / "01-demo" / "checks.py").write_text("SEED = 3\n")
    assert labs.build(source=source, dest=dest) == [dest / "01-demo" / "checks.py"]
    # a learner's edit, and a pulled solution change to the same file: the build refuses
    (dest / "01-demo" / "exercise.py").write_text("my answer\n")
    (source / "01-demo" / "exercise.py").write_text("def handle():\n    return 2\n")
    _git(tmp_path, "add", "solutions")
    _git(tmp_path, "commit", "-qm", "upstream")
    assert labs.learner_edits(source=source, dest=dest) == [dest / "01-demo" / "exercise.py"]
    args = ["labs", "build", "--source", str(source), "--dest", str(dest)]
    assert cli.main(args) == 2
    assert "exercise.py" in capsys.readouterr().err
    assert (dest / "01-demo" / "exercise.py").read_text() == "my answer\n"
    assert cli.main([*args, "--force"]) == 0
    assert (dest / "01-demo" / "exercise.py.orig").read_text() == "my answer\n"
