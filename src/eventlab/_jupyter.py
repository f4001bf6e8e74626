"""How the course opens JupyterLab: at the course root, on the course map, with the kit's settings.

Every route into the course (``make lab``, ``eventlab lab``, conda, Binder's
``binder/start``) puts :data:`CONFIG_DIR` on ``JUPYTER_CONFIG_PATH`` and the
folder of the interpreter that runs the kit in front of ``PATH``
(:func:`environment`). The settings there (:func:`configure`) do four things:

- JupyterLab's terminal starts a shell that puts that folder back in front of
  ``PATH`` after the learner's own rc files, so ``eventlab`` is found even where
  a login profile resets ``PATH`` (Debian's ``/etc/profile`` does);
- saving a notebook writes the kernel metadata the course stores (``Python 3``,
  ``language_info`` reduced to its name), so opening a lesson does not mark it
  modified in ``git status`` (outputs are kept out of git by the nbstripout
  filter that ``make install`` sets up); after the save, git's index is
  refreshed (:func:`post_save`), because ``git status`` calls a file whose size
  changed modified without running the filter, while ``git diff`` is empty;
- a saved live dashboard becomes the line "re-run this cell to get the live
  dashboard back" instead of a widget whose model is gone after a reload;
- no news or update check: nothing is fetched from the internet, and no
  "Jupyter news" prompt covers the course map.

Introduced with ``eventlab lab`` (lesson 00 opens the course this way).
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "CONFIG_DIR",
    "DASHBOARD_GONE",
    "KERNELSPEC",
    "LANDING",
    "WIDGET_MIME",
    "command",
    "configure",
    "course_root",
    "environment",
    "normalize_notebook",
    "post_save",
    "pre_save",
    "refresh_git_index",
    "shell_exports",
]

CONFIG_DIR = Path(__file__).parent / "_jupyter_config"
"""Jupyter settings for the course: server config, page config, the terminal's rc file."""

LANDING = "notebooks/index.ipynb"
"""The course map, relative to the course root: where JupyterLab opens."""

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}
"""The kernel metadata every course notebook is stored with."""

DASHBOARD_GONE = "re-run this cell to get the live dashboard back"
"""What a saved live dashboard shows once its kernel-side widget is gone."""

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
"""The output type of a live ipywidget (its model lives only in the running kernel)."""


def course_root(start: str | Path = ".") -> Path:
    """Return the nearest folder at or above ``start`` that holds the course map.

    Raises:
        EventlabError: No folder there or above holds ``notebooks/index.ipynb``.
    """
    from eventlab._errors import EventlabError  # noqa: PLC0415 - keep this module light

    here = Path(start).resolve()
    for folder in (here, *here.parents):
        if (folder / LANDING).is_file():
            return folder
    raise EventlabError(
        f"no course here: {LANDING} is not in {here} or any folder above it",
        fix="run `eventlab lab` from the eventlab repository (or pass --root)",
    )


def environment(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return the environment JupyterLab runs in: the kit's ``bin`` first on ``PATH``, its config.

    Args:
        base: The environment to extend; default ``os.environ``.
    """
    env = dict(os.environ if base is None else base)
    bin_dir = str(Path(sys.executable).parent)
    path = [bin_dir, *(p for p in env.get("PATH", "").split(os.pathsep) if p and p != bin_dir)]
    env["PATH"] = os.pathsep.join(path)
    env["EVENTLAB_BIN"] = bin_dir
    config = [str(CONFIG_DIR)]
    config += [p for p in env.get("JUPYTER_CONFIG_PATH", "").split(os.pathsep) if p]
    env["JUPYTER_CONFIG_PATH"] = os.pathsep.join(dict.fromkeys(config))
    return env


def command(root: Path, *, port: int | None = None, open_browser: bool = True) -> list[str]:
    """Return the command line that runs JupyterLab on the course at ``root``.

    Args:
        root: The course root (``notebooks/`` and ``labs/`` are both inside it).
        port: JupyterLab's port; default its own choice (8888, or the next free one).
        open_browser: Open the learner's browser on the course map.
    """
    cmd = [
        sys.executable,  # the interpreter running eventlab runs JupyterLab: same environment
        "-m",
        "jupyterlab",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.ip=127.0.0.1",
        f"--LabApp.default_url=/lab/tree/{LANDING}",
    ]
    if port:
        cmd.append(f"--ServerApp.port={port}")
    if not open_browser:
        cmd.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    return cmd


def _terminal_shell() -> list[str]:
    bash = shutil.which("bash")
    if bash:
        # Not a login shell: a login profile may reset PATH; the rc file restores it.
        return [bash, "--rcfile", str(CONFIG_DIR / "terminal.bashrc"), "-i"]
    return [os.environ.get("SHELL") or "sh", "-i"]


def configure(c: Any) -> None:
    """Apply the course's JupyterLab settings to a traitlets config object ``c``."""
    c.ServerApp.terminado_settings = {"shell_command": _terminal_shell()}
    c.ContentsManager.pre_save_hook = "eventlab._jupyter.pre_save"
    c.FileContentsManager.post_save_hook = "eventlab._jupyter.post_save"
    c.LabApp.news_url = None
    c.LabApp.check_for_updates_class = "jupyterlab.NeverCheckForUpdate"


def _is_dashboard(output: Mapping[str, Any]) -> bool:
    data = output.get("data") or {}
    plain = data.get("text/plain", "")
    text = "".join(plain) if isinstance(plain, list) else str(plain)
    return WIDGET_MIME in data and DASHBOARD_GONE in text


def normalize_notebook(notebook: dict[str, Any]) -> dict[str, Any]:
    """Rewrite, in place, what JupyterLab changes in a notebook the learner did not edit.

    The kernel metadata goes back to :data:`KERNELSPEC` (JupyterLab writes
    "Python 3 (ipykernel)" and the full ``language_info`` on open); widget state
    saved in the metadata is dropped; a live dashboard output keeps only its
    text, "re-run this cell to get the live dashboard back", because its widget
    cannot come back after a reload without running the cell again.
    """
    meta = notebook.setdefault("metadata", {})
    spec = meta.get("kernelspec") or {}
    if spec.get("name", "python3") == "python3":
        meta["kernelspec"] = dict(KERNELSPEC)
        meta["language_info"] = {"name": "python"}
    meta.pop("widgets", None)
    for cell in notebook.get("cells", []):
        for output in cell.get("outputs", []) or []:
            if _is_dashboard(output):
                output["data"] = {"text/plain": DASHBOARD_GONE}
    return notebook


def pre_save(*, model: dict[str, Any], **_: Any) -> None:
    """JupyterLab's pre-save hook: :func:`normalize_notebook` on every notebook saved."""
    if model.get("type") == "notebook" and isinstance(model.get("content"), dict):
        normalize_notebook(model["content"])


def refresh_git_index(path: str | Path, *, timeout: float = 20.0) -> bool:
    """Make ``git status`` compare the saved file ``path`` by content, not by size.

    ``git status`` (and ``git update-index --refresh``) call a tracked file
    whose size changed modified without running its clean filter, so a lesson
    saved with outputs is listed although ``git diff`` is empty. This re-enters
    the file's index entry with the blob it already has (``update-index
    --cacheinfo``: nothing is staged, the size is forgotten), then refreshes:
    git compares the file through the nbstripout filter and keeps the new stat
    data where they agree. A file the learner really changed stays modified.
    Returns whether git ran and left every file clean; outside a repository,
    for an untracked file, without git, or while another git command holds
    the index, it changes nothing and returns False.

    Args:
        path: The saved file.
        timeout: Seconds to wait for each git command before giving up.
    """
    git = shutil.which("git")
    path = Path(path)
    if git is None:
        return False

    def run(*args: str) -> subprocess.CompletedProcess[str] | None:
        try:
            return subprocess.run(  # noqa: S603 - fixed arguments, git from PATH
                [git, "-C", str(path.parent), *args],
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None

    listed = run("ls-files", "--stage", "--full-name", "--", path.name)
    entries = listed.stdout.splitlines() if listed and listed.returncode == 0 else []
    if len(entries) != 1:  # untracked, outside git, or a merge conflict: leave it to git
        return False
    meta, name = entries[0].split("\t", 1)
    mode, blob, stage = meta.split()
    if stage != "0":
        return False
    top = run("rev-parse", "--show-toplevel")
    if top is None or top.returncode != 0:
        return False
    again = run("-C", top.stdout.strip(), "update-index", "--cacheinfo", f"{mode},{blob},{name}")
    if again is None or again.returncode != 0:
        return False
    refreshed = run("update-index", "-q", "--refresh")
    return refreshed is not None and refreshed.returncode == 0


def post_save(*, os_path: str, **_: Any) -> None:
    """JupyterLab's post-save hook: after a notebook is saved, :func:`refresh_git_index`.

    So ``git status`` lists a lesson only when the learner changed what git
    stores (a cell), not because outputs changed its size on disk.
    """
    if os_path.endswith(".ipynb"):
        refresh_git_index(os_path)


def shell_exports() -> str:
    """Return ``export`` lines giving a shell the environment of :func:`environment`.

    ``binder/start`` evaluates them before it starts Jupyter, so Binder gets the
    same settings as ``eventlab lab``.
    """
    env = environment()
    names = ("PATH", "EVENTLAB_BIN", "JUPYTER_CONFIG_PATH")
    return "".join(f"export {name}={shlex.quote(env[name])}\n" for name in names)


if __name__ == "__main__":  # pragma: no cover - `python -m eventlab._jupyter` in binder/start
    sys.stdout.write(shell_exports())
