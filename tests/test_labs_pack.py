"""eventlab labs pack: the learners' bundle has the course and the labs, never solutions/."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from eventlab import cli, labs

ROOT = Path(__file__).resolve().parents[1]


def test_pack_leaves_solutions_out_and_offers_partials_as_spot_the_bug(tmp_path, capsys):
    """The bundle has labs/, notebooks/, src/ and the Makefile; no solutions/ or tests/."""
    dest = tmp_path / "bundle.tar.gz"
    argv = ["labs", "pack", "--root", str(ROOT), "--dest", str(dest), "--spot-the-bug"]
    assert cli.main(argv) == 0
    assert "no solutions/" in capsys.readouterr().out
    with tarfile.open(dest) as bundle:
        names = bundle.getnames()
        exercise = bundle.extractfile("eventlab/labs/03-idempotent-consumer/exercise.py")
        assert exercise is not None
        assert b"raise NotImplementedError" in exercise.read()
    assert not [n for n in names if n.startswith(("eventlab/solutions/", "eventlab/tests/"))]
    for needed in ("Makefile", "pyproject.toml", "constraints.txt", "src/eventlab/course.py"):
        assert f"eventlab/{needed}" in names
    assert "eventlab/notebooks/00-setup-check.ipynb" in names
    partials = [n for n in names if n.startswith("eventlab/spot-the-bug/")]
    assert "eventlab/spot-the-bug/03-idempotent-consumer/partial.py" in partials
    assert not [n for n in partials if n.endswith("/exercise.py")]


def test_pack_refuses_stale_labs(tmp_path):
    """A labs/ out of date with solutions/ is refused: the bundle would ship old exercises."""
    root = tmp_path / "course"
    (root / "solutions" / "03-x").mkdir(parents=True)
    (root / "solutions" / "03-x" / "exercise.py").write_text("x = 1\n")
    (root / "labs").mkdir()
    with pytest.raises(labs.LabsError, match="eventlab labs build"):
        labs.pack(root=root, dest=tmp_path / "b.tar.gz")
    labs.build(source=root / "solutions", dest=root / "labs")
    assert labs.pack(root=root, dest=tmp_path / "b.tar.gz") == ["labs/03-x/exercise.py"]
