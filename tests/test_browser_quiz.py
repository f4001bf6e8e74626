"""In a real browser: a prediction widget is answered and judged, and Mermaid draws as SVG.

JupyterLab (loopback only, its own config folders) serves a small notebook with a
prediction prompt, its reveal and a Mermaid diagram in markdown; headless Debian
``chromium`` driven by ``playwright`` types an answer into the prompt and reads the
reveal's feedback change, then checks the diagram rendered as an SVG with no
network (JupyterLab 4 bundles Mermaid). Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright import sync_api  # a pinned dev dependency: missing is a failure, not a skip

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-sync"]
CELLS = [
    (
        "code",
        (
            'from eventlab import quiz\n\np = quiz.predict("99-browser", "Ten deposits of 50, '
            'one applied twice: balance?", unit="EUR")'
        ),
    ),
    ("code", 'shown = quiz.reveal(p, actual=550, why="the effect ran twice")'),
    (
        "markdown",
        (
            "## The flow\n\n```mermaid\nflowchart LR\n    S[stream] --> H{handler}\n"
            "    H -- ok --> A[XACK]\n    H -- poison --> D[(dead letters)]\n```"
        ),
    ),
]


@pytest.fixture
def chromium() -> str:
    """Debian's chromium, or a skip that says how to install it."""
    path = shutil.which("chromium")
    if path is None:
        pytest.skip("Debian chromium is not installed (scripts/system-deps.sh)")
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _notebook() -> dict:
    cells = []
    for n, (kind, source) in enumerate(CELLS):
        cell = {"cell_type": kind, "id": f"q{n}", "metadata": {}, "source": source}
        if kind == "code":
            cell |= {"execution_count": None, "outputs": []}
        cells.append(cell)
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return {"cells": cells, "metadata": {"kernelspec": kernel}, "nbformat": 4, "nbformat_minor": 5}


@pytest.fixture
def quiz_lab(tmp_path: Path) -> Iterator[str]:
    """JupyterLab on loopback serving the quiz notebook; yields its URL with the token."""
    root = tmp_path / "root"
    root.mkdir()
    (root / "quiz.ipynb").write_text(json.dumps(_notebook()))
    labconfig = tmp_path / "config" / "labconfig"
    labconfig.mkdir(parents=True)
    (labconfig / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    port, token = _free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "IPYTHONDIR": str(tmp_path / "ipython"),
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    command = [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        f"--port={port}",
        "--ServerApp.port_retries=0",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.root_dir={root}",
        f"--IdentityProvider.token={token}",
        "--LabApp.expose_app_in_browser=True",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.news_url=None",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    with (tmp_path / "jupyter.log").open("w") as log:
        server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=1):  # noqa: S310 - our loopback URL
                        break
                except OSError:
                    if server.poll() is not None or time.monotonic() > deadline:
                        pytest.fail(
                            f"JupyterLab did not start:\n{(tmp_path / 'jupyter.log').read_text()}"
                        )
                    time.sleep(0.2)
            yield f"{base}/lab/tree/quiz.ipynb?token={token}"
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()


def _feedback(page) -> str:
    return page.eval_on_selector(".eventlab-reveal", "e => e.textContent")


def test_prediction_is_judged_and_mermaid_renders_offline(chromium, quiz_lab, tmp_path):
    """Typing 550 makes the reveal say right, 500 not quite; the Mermaid block is an SVG."""
    ARTIFACTS.mkdir(exist_ok=True)
    blocked: list[str] = []

    def route(r) -> None:
        host = urlsplit(r.request.url).hostname
        if urlsplit(r.request.url).scheme in {"data", "blob"} or host in {"127.0.0.1", "localhost"}:
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(tmp_path / "profile"),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1200, "height": 900},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.route("**/*", route)
            page.goto(quiz_lab)
            page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
            page.wait_for_function(
                "() => /Idle/.test("
                "document.querySelector('#jp-main-statusbar')?.textContent ?? '')",
                timeout=60_000,
            )
            page.wait_for_function("() => window.jupyterapp !== undefined", timeout=30_000)
            page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
            page.wait_for_selector(".eventlab-reveal", timeout=60_000)
            unanswered = _feedback(page)
            page.fill(".eventlab-prediction input", "550")
            page.wait_for_function(
                "() => /Right:/.test(document.querySelector('.eventlab-reveal')?.textContent)",
                timeout=20_000,
            )
            right = _feedback(page)
            page.fill(".eventlab-prediction input", "500")
            page.wait_for_function(
                "() => /Not quite/.test(document.querySelector('.eventlab-reveal')?.textContent)",
                timeout=20_000,
            )
            wrong = _feedback(page)
            page.wait_for_selector(".jp-RenderedMermaid", timeout=30_000)
            page.wait_for_function(
                "() => !!document.querySelector('.jp-RenderedMermaid svg, "
                '.jp-RenderedMermaid img[src^="data:image/svg"]\')',
                timeout=30_000,
            )
            mermaid = page.eval_on_selector(
                ".jp-RenderedMermaid",
                "e => ({warning: e.classList.contains('jp-mod-warning'), html: e.innerHTML})",
            )
            page.screenshot(path=str(ARTIFACTS / "browser-quiz.png"))
        finally:
            context.close()

    assert unanswered.startswith("It was 550 EUR. You did not predict."), unanswered
    assert right.startswith("Right: you predicted 550 EUR, and it was 550 EUR."), right
    assert "the effect ran twice" in right
    assert wrong.startswith("Not quite: you predicted 500 EUR; it was 550 EUR."), wrong
    assert not mermaid["warning"], mermaid["html"][:500]
    assert "dead letters" in mermaid["html"] or "data:image/svg" in mermaid["html"]
    assert not blocked, blocked
