"""In a real browser: charts draw offline in JupyterLab and the dashboard's numbers move.

Debian's ``chromium`` (installed by scripts/system-deps.sh) is driven by the
``playwright`` package with ``executable_path`` — never a downloaded browser.
JupyterLab runs on a free loopback port with its own config, data and runtime
folders; every request that is not to loopback is blocked and recorded, so a
chart that needed a CDN would fail here. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]

HERE = Path(__file__).parent
ARTIFACTS = HERE.parent / "test-artifacts"
CHARTS = 6  # chart cells in tests/browser/charts.ipynb
FAILURE_TEXTS = (
    "renderer has not been properly enabled",
    "Error loading script",
    "cdn.jsdelivr",
    "Javascript Error",
    "Traceback",
    "Error displaying widget",
    "model not found",
)
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def chromium() -> str:
    """Debian's chromium, or a skip that says how to install it."""
    path = shutil.which("chromium")
    if path is None:
        pytest.skip(
            "Debian chromium is not installed (scripts/system-deps.sh: apt-get install chromium)"
        )
    return path


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def lab(tmp_path: Path, broker) -> Iterator[str]:
    """JupyterLab on loopback serving a copy of the test notebook; yields its URL with token."""
    root = tmp_path / "root"
    root.mkdir()
    for name in ("charts.ipynb", "chart_frames.py"):
        shutil.copy(HERE / "browser" / name, root / name)
    port, token = _free_port(), secrets.token_hex(16)
    # The news prompt would ask to fetch from the internet and cover the page.
    labconfig = tmp_path / "config" / "labconfig"
    labconfig.mkdir(parents=True)
    (labconfig / "page_config.json").write_text(
        json.dumps({"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": True}})
    )
    env = {
        **os.environ,
        "REDIS_URL": broker.url,
        "EVENTLAB_NAMESPACE": "browser",
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
        "--LabApp.expose_app_in_browser=True",  # window.jupyterapp: run all cells by command
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.news_url=None",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    log = (tmp_path / "jupyter.log").open("w")
    server = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=root)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                status = f"{base}/api/status?token={token}"
                with urllib.request.urlopen(status, timeout=1):  # noqa: S310 - our http URL
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(
                        f"JupyterLab did not start:\n{(tmp_path / 'jupyter.log').read_text()}"
                    )
                time.sleep(0.2)
        yield f"{base}/lab/tree/charts.ipynb?token={token}"
    finally:
        server.terminate()  # JupyterLab shuts its kernels down on SIGTERM
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def _loopback(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in {"data", "blob", "about"} or parts.hostname in {"127.0.0.1", "localhost"}


def _text(page, selector: str) -> list[str]:
    # textContent, not innerText: cells scrolled out of view still report their text.
    return page.eval_on_selector_all(selector, "els => els.map(e => e.textContent)")


def _run_notebook(page, url: str) -> dict[str, Any]:
    """Open the notebook, run all cells, read the dashboard twice, take screenshots."""
    page.goto(url)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    # Run All before the kernel is idle opens a kernel dialog and runs nothing.
    page.wait_for_function(
        "() => /Idle/.test(document.querySelector('#jp-main-statusbar')?.textContent ?? '')",
        timeout=60_000,
    )
    page.wait_for_function("() => window.jupyterapp !== undefined", timeout=30_000)
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_function(
        f"() => document.querySelectorAll('.jp-RenderedSVG').length >= {CHARTS}",
        timeout=60_000,
    )
    dash = page.wait_for_selector(".eventlab-dashboard td.el-length", timeout=30_000)
    assert dash is not None
    page.wait_for_function(
        "() => /live/.test(document.querySelector('.eventlab-dashboard .el-status')"
        "?.textContent ?? '')",
        timeout=30_000,
    )
    before = _text(page, ".eventlab-dashboard td.el-length")
    page.wait_for_timeout(1500)  # the task polls twice a second; events keep flowing
    after = _text(page, ".eventlab-dashboard td.el-length")
    page.wait_for_function(
        "() => /[▂▃▄▅▆▇█]/.test(document.querySelector('.eventlab-dashboard td.el-spark')"
        "?.textContent ?? '')",
        timeout=15_000,
    )
    lag = _text(page, ".eventlab-dashboard td.el-lag")
    buttons = _text(page, ".eventlab-dashboard button")
    # A click travels browser → widget comm → kernel → eventlab.faults → broker.
    page.click(".eventlab-dashboard button:has-text('Duplicate burst')")
    page.wait_for_function(
        "() => /re-published/.test(document.querySelector('.eventlab-dashboard')"
        "?.textContent ?? '')",
        timeout=15_000,
    )

    widget = page.query_selector(".eventlab-dashboard")
    assert widget is not None
    widget.screenshot(path=str(ARTIFACTS / "browser-dashboard.png"))
    svgs = page.query_selector_all(".jp-RenderedSVG")
    for n, output in enumerate(svgs[:CHARTS], start=1):
        output.screenshot(path=str(ARTIFACTS / f"browser-chart-{n}.png"))
    page.screenshot(path=str(ARTIFACTS / "browser-notebook.png"))

    drawn = page.eval_on_selector_all(
        ".jp-RenderedSVG",
        "els => els.map(e => {"
        " const img = e.querySelector('img');"
        " if (img) return img.complete && img.naturalWidth > 0"
        " && img.src.startsWith('data:image/svg+xml');"
        " const svg = e.querySelector('svg');"
        " return !!svg && svg.querySelectorAll('.mark-group, path, rect').length > 0; })",
    )
    page_text = page.eval_on_selector(".jp-Notebook", "e => e.textContent")
    errors = _text(page, '.jp-OutputArea-output[data-mime-type*="stderr"]')
    return {
        "before": before,
        "after": after,
        "lag": lag,
        "buttons": buttons,
        "drawn": drawn,
        "page_text": page_text,
        "errors": errors,
    }


def test_charts_draw_offline_and_the_dashboard_moves_in_jupyterlab(chromium, lab, tmp_path):
    """Run-all in JupyterLab with no network: six SVG charts, no renderer errors, live numbers."""
    sync_api = pytest.importorskip("playwright.sync_api")
    ARTIFACTS.mkdir(exist_ok=True)
    blocked: list[str] = []

    def route(r) -> None:
        if _loopback(r.request.url):
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
            viewport={"width": 1400, "height": 1800},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.route("**/*", route)
            seen = _run_notebook(page, lab)
        finally:
            context.close()
            (ARTIFACTS / "browser-blocked.txt").write_text("".join(f"{u}\n" for u in blocked))

    assert seen["drawn"] == [True] * CHARTS, seen["drawn"]
    for failure in FAILURE_TEXTS:
        assert failure not in seen["page_text"], failure
    assert "renderer: svg" in seen["page_text"]
    assert not [e for e in seen["errors"] if re.search(r"Error|Exception", e)], seen["errors"]
    assert not [u for u in blocked if "cdn" in u or "vega" in u], blocked
    before, after = seen["before"], seen["after"]
    assert len(before) == len(after) == 1
    assert int(after[0]) > int(before[0]) >= 0, (before, after)
    assert int(seen["lag"][0]) > 0
    assert [b.strip() for b in seen["buttons"]] == [
        "Pause broker 3 s",
        "Kill a consumer",
        "Add latency",
        "Partition",
        "Poison event",
        "Duplicate burst",
        "Heal",
    ]
