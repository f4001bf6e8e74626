"""How eventlab opens JupyterLab: course root, landing page, PATH, settings, clean saves."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbstripout._utils import strip_output
from traitlets.config import Config

from eventlab import _jupyter, cli
from eventlab._errors import EventlabError

ROOT = Path(__file__).resolve().parent.parent


def test_course_root_is_found_from_any_folder_inside_and_refused_outside(tmp_path):
    """From notebooks/ or a lab folder the root is the repository; elsewhere an error says why."""
    assert _jupyter.course_root(ROOT / "notebooks") == ROOT
    assert _jupyter.course_root(ROOT / "labs" / "03-idempotent-consumer") == ROOT
    with pytest.raises(EventlabError, match="eventlab lab"):
        _jupyter.course_root(tmp_path)


def test_command_roots_jupyterlab_at_the_course_and_lands_on_the_map():
    """The command serves the whole course on loopback and opens notebooks/index.ipynb."""
    cmd = _jupyter.command(ROOT, port=8899, open_browser=False)
    assert cmd[:3] == [sys.executable, "-m", "jupyterlab"]
    assert f"--ServerApp.root_dir={ROOT}" in cmd
    assert "--ServerApp.ip=127.0.0.1" in cmd
    assert "--LabApp.default_url=/lab/tree/notebooks/index.ipynb" in cmd
    assert (ROOT / _jupyter.LANDING).is_file()
    assert "--no-browser" in cmd
    assert "--ServerApp.port=8899" in cmd


def test_environment_puts_the_kits_bin_first_and_adds_the_config():
    """PATH starts with the folder holding this interpreter (and eventlab); config path added."""
    env = _jupyter.environment({"PATH": "/usr/bin:/bin", "JUPYTER_CONFIG_PATH": "/elsewhere"})
    bin_dir = str(Path(sys.executable).parent)
    assert env["PATH"].split(os.pathsep)[0] == bin_dir
    assert (Path(bin_dir) / "eventlab").exists()
    assert env["JUPYTER_CONFIG_PATH"].split(os.pathsep) == [str(_jupyter.CONFIG_DIR), "/elsewhere"]
    assert env["EVENTLAB_BIN"] == bin_dir


def test_binder_exports_are_the_same_environment():
    """`python -m eventlab._jupyter` prints exports a shell can eval (binder/start does)."""
    out = subprocess.run(
        [sys.executable, "-m", "eventlab._jupyter"], capture_output=True, text=True, check=True
    ).stdout
    shown = subprocess.run(
        ["bash", "-c", f'{out}\nprintf "%s\\n" "$EVENTLAB_BIN" "$JUPYTER_CONFIG_PATH"'],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert shown[0] == str(Path(sys.executable).parent)
    assert shown[1].split(os.pathsep)[0] == str(_jupyter.CONFIG_DIR)


def test_config_sets_the_terminal_the_save_hook_and_no_news():
    """The settings every route loads: terminal shell with the rc file, pre-save hook, no news."""
    c = Config()
    _jupyter.configure(c)
    shell = c.ServerApp.terminado_settings["shell_command"]
    assert str(_jupyter.CONFIG_DIR / "terminal.bashrc") in shell
    assert "-l" not in shell  # a login shell would reset PATH from /etc/profile
    assert c.ContentsManager.pre_save_hook == "eventlab._jupyter.pre_save"
    assert c.FileContentsManager.post_save_hook == "eventlab._jupyter.post_save"
    assert c.LabApp.news_url is None
    page = json.loads((_jupyter.CONFIG_DIR / "labconfig" / "page_config.json").read_text())
    assert page["disabledExtensions"]["@jupyterlab/apputils-extension:announcements"]


def test_terminal_rc_puts_eventlab_first_even_after_a_profile_resets_path(tmp_path):
    """Under the rc file, with PATH reset as /etc/profile does, `eventlab` is the kit's."""
    home = tmp_path / "home"
    home.mkdir()
    (home / ".bashrc").write_text('PATH="/usr/bin:/bin"\n')
    env = {
        "HOME": str(home),
        "PATH": "/usr/bin:/bin",
        "EVENTLAB_BIN": str(Path(sys.executable).parent),
    }
    rc = _jupyter.CONFIG_DIR / "terminal.bashrc"
    # what the interactive shell does at start: read the rc file, then run what is typed
    found = subprocess.run(
        ["bash", "-c", f". {rc}; command -v eventlab"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert found == str(Path(sys.executable).parent / "eventlab")


def _notebook() -> dict:
    return {
        "cells": [
            {
                "cell_type": "code",
                "id": "c1",
                "metadata": {},
                "execution_count": 3,
                "source": ["dash = dashboard.show()"],
                "outputs": [
                    {
                        "output_type": "display_data",
                        "metadata": {},
                        "data": {
                            "application/vnd.jupyter.widget-view+json": {"model_id": "abc"},
                            "text/plain": _jupyter.DASHBOARD_GONE,
                        },
                    },
                    {"output_type": "stream", "name": "stdout", "text": "kept\n"},
                ],
            }
        ],
        "metadata": {
            "kernelspec": {
                "display_name": "Python 3 (ipykernel)",
                "language": "python",
                "name": "python3",
            },
            "language_info": {
                "name": "python",
                "version": "3.11.2",
                "codemirror_mode": {"name": "ipython"},
            },
            "widgets": {"application/vnd.jupyter.widget-state+json": {}},
        },
        "nbformat": 4,
        "nbformat_minor": 5,
    }


def test_saving_writes_the_stored_kernel_metadata_and_a_rerun_line_for_the_dashboard():
    """pre_save: kernelspec and language_info as stored, no widget state, dashboard as text."""
    model = {"type": "notebook", "content": _notebook()}
    _jupyter.pre_save(model=model, path="notebooks/05.ipynb", contents_manager=None)
    nb = model["content"]
    assert nb["metadata"] == {
        "kernelspec": _jupyter.KERNELSPEC,
        "language_info": {"name": "python"},
    }
    outputs = nb["cells"][0]["outputs"]
    assert outputs[0]["data"] == {"text/plain": _jupyter.DASHBOARD_GONE}
    assert outputs[1]["text"] == "kept\n"
    stored = json.loads((ROOT / "notebooks" / "00-setup-check.ipynb").read_text())["metadata"]
    assert stored == nb["metadata"]


def test_other_widgets_and_files_are_left_alone():
    """Only the dashboard's output is rewritten; a plain file model passes through."""
    nb = _notebook()
    nb["cells"][0]["outputs"][0]["data"]["text/plain"] = "IntSlider(value=3)"
    _jupyter.normalize_notebook(nb)
    assert "application/vnd.jupyter.widget-view+json" in nb["cells"][0]["outputs"][0]["data"]
    model = {"type": "file", "content": "x"}
    _jupyter.pre_save(model=model, path="a.txt", contents_manager=None)
    assert model == {"type": "file", "content": "x"}


def test_eventlab_lab_outside_the_course_exits_2_naming_the_fix(tmp_path, monkeypatch, capsys):
    """`eventlab lab --root` outside a course is a one-line error (exit 2), no server started."""
    monkeypatch.chdir(tmp_path)
    assert cli.main(["lab", "--root", str(tmp_path), "--no-browser"]) == 2
    assert "eventlab lab" in capsys.readouterr().err


# nbstripout's own defaults for the clean filter (its command line adds exactly these).
_NBSTRIPOUT_KEYS = [
    "metadata.signature",
    "metadata.widgets",
    "cell.metadata.collapsed",
    "cell.metadata.ExecuteTime",
    "cell.metadata.execution",
    "cell.metadata.heading_collapsed",
    "cell.metadata.hidden",
    "cell.metadata.scrolled",
]


def _nbstripout(path: Path) -> bytes:
    """What `python -m nbstripout --keep-id` (the git filter) writes for ``path``, in process."""
    notebook = nbformat.read(path, as_version=nbformat.NO_CONVERT)
    stripped = strip_output(
        notebook, keep_output=False, keep_count=False, keep_id=True, extra_keys=_NBSTRIPOUT_KEYS
    )
    out = io.StringIO()
    nbformat.write(stripped, out)
    return out.getvalue().encode()


def test_in_process_filter_matches_the_nbstripout_command(tmp_path):
    """_nbstripout() writes byte for byte what the filter command writes, outputs stripped."""
    nb = json.loads((ROOT / "notebooks" / "00-setup-check.ipynb").read_text())
    code = next(c for c in nb["cells"] if c["cell_type"] == "code")
    code["execution_count"] = 4
    code["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "ran\n"}]
    path = tmp_path / "ran.ipynb"
    path.write_text(json.dumps(nb))
    command = subprocess.run(
        [sys.executable, "-m", "nbstripout", "--keep-id", "-t", str(path)],
        capture_output=True,
        check=True,
    ).stdout
    assert _nbstripout(path) == command
    assert b"ran\\n" not in command
    assert command == (ROOT / "notebooks" / "00-setup-check.ipynb").read_bytes()


def _stored_notebooks() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "*.ipynb"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return [ROOT / name for name in listed if (ROOT / name).is_file()]


def test_stored_notebooks_are_what_the_git_filter_and_the_save_hook_make_of_them():
    """Each notebook is unchanged by the nbstripout filter and by the save hook's metadata.

    Otherwise a fresh clone shows lessons modified in `git status` (fix: run
    `python -m nbstripout --keep-id FILE`, then set the kernelspec to "Python 3").
    """
    paths = _stored_notebooks()
    assert len(paths) >= 30
    outputs = {path: _nbstripout(path) for path in paths}
    changed = [p.relative_to(ROOT) for p, out in outputs.items() if out != p.read_bytes()]
    assert changed == []
    for path in paths:
        meta = json.loads(path.read_text())["metadata"]
        assert meta.get("kernelspec") == _jupyter.KERNELSPEC, path.relative_to(ROOT)
        assert meta.get("language_info") == {"name": "python"}, path.relative_to(ROOT)


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@localhost", *args],
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def test_a_saved_run_of_a_lesson_leaves_git_status_clean_and_a_real_edit_shows(tmp_path):
    """post_save: outputs alone never show in `git status`; an edited cell still does."""
    repo = tmp_path / "course"
    (repo / "notebooks").mkdir(parents=True)
    lesson = repo / "notebooks" / "00.ipynb"
    lesson.write_bytes((ROOT / "notebooks" / "00-setup-check.ipynb").read_bytes())
    (repo / ".gitattributes").write_text("*.ipynb filter=nbstripout\n")
    _git(repo, "init", "-q")
    clean = f'"{sys.executable}" -m nbstripout --keep-id'
    _git(repo, "config", "filter.nbstripout.clean", clean)
    _git(repo, "config", "filter.nbstripout.smudge", "cat")
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "course")

    nb = json.loads(lesson.read_text())
    nb["metadata"]["kernelspec"]["display_name"] = "Python 3 (ipykernel)"  # JupyterLab's
    model = {"type": "notebook", "content": nb}
    _jupyter.pre_save(model=model, path="notebooks/00.ipynb", contents_manager=None)
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            cell["execution_count"] = 1
            cell["outputs"] = [{"output_type": "stream", "name": "stdout", "text": "ran\n"}]
    lesson.write_text(json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    assert _git(repo, "status", "--porcelain") != ""  # git's size shortcut: the bug this fixes
    _jupyter.post_save(model=model, os_path=str(lesson), contents_manager=None)
    assert _git(repo, "status", "--porcelain") == ""
    assert "ran" in lesson.read_text()  # the learner's outputs stay on disk

    nb["cells"][0]["source"] = "# my own note\n"
    lesson.write_text(json.dumps(nb, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    _jupyter.post_save(model=model, os_path=str(lesson), contents_manager=None)
    assert _git(repo, "status", "--porcelain").split() == ["M", "notebooks/00.ipynb"]
    assert _git(repo, "diff", "--cached", "--name-only") == ""  # nothing staged


def test_refreshing_outside_a_repository_does_nothing(tmp_path):
    """post_save outside git (a copied course, Binder without .git) is a quiet no-op."""
    (tmp_path / "x.ipynb").write_text("{}")
    assert _jupyter.refresh_git_index(tmp_path / "x.ipynb") is False
    _jupyter.post_save(model={}, os_path=str(tmp_path / "x.ipynb"), contents_manager=None)
