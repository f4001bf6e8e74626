"""In a real browser: charts draw offline in JupyterLab and the dashboard's numbers move.

Debian's ``chromium`` (installed by scripts/system-deps.sh) is driven by the
``playwright`` package with ``executable_path`` — never a downloaded browser.
JupyterLab runs on a free loopback port with its own config, data and runtime
folders; every request that is not to loopback is blocked and recorded, so a
chart that needed a CDN would fail here. Screenshots go to ``test-artifacts/``.
"""

from __future__ import annotations

import base64
import contextlib
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
from urllib.parse import quote, unquote, urlsplit
from xml.etree import ElementTree as ET

import altair as alt
import pandas as pd
import pytest
import vl_convert
from playwright import sync_api  # a pinned dev dependency: missing is a failure, not a skip

from eventlab import _jupyter
from eventlab import broker as broker_mod
from tests.browser import walk

pytestmark = [pytest.mark.browser, pytest.mark.timeout(180)]
ROOT = Path(__file__).resolve().parent.parent

HERE = Path(__file__).parent
ARTIFACTS = HERE.parent / "test-artifacts"
CHARTS = 6  # chart cells in tests/browser/charts.ipynb
SVG_NS = "{http://www.w3.org/2000/svg}"
_SHAPES = {"rect", "circle", "line", "ellipse", "polygon", "polyline", "image"}
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


def _svg_of(output: dict[str, Any]) -> str:
    """The SVG text of one chart output: decoded from its data: URL, or its inline markup."""
    if "svg" in output:
        return str(output["svg"])
    header, _, payload = str(output["src"]).partition(",")
    assert header.startswith("data:image/svg+xml"), header[:60]
    if header.endswith(";base64"):
        return base64.b64decode(payload).decode()
    return unquote(payload)


def _data_marks(svg: str) -> int:
    """Count drawn items inside vega's data-mark groups (axes, legends and titles excluded).

    Vega's SVG puts every mark in ``<g class="mark-<type> role-mark ...">``; an
    empty data set leaves those groups empty, a blank or failed chart has none.
    """
    root = ET.fromstring(svg)  # noqa: S314 - SVG our own kernel drew
    drawn = 0
    for group in root.iter(f"{SVG_NS}g"):
        classes = (group.get("class") or "").split()
        if "role-mark" not in classes or not any(c.startswith("mark-") for c in classes):
            continue
        for item in group.iter():
            tag = item.tag.rsplit("}", 1)[-1]
            if item is group or tag == "g":
                continue
            if tag == "path":
                drawn += bool((item.get("d") or "").strip())
            elif tag == "text":
                drawn += bool((item.text or "").strip())
            else:
                drawn += tag in _SHAPES
    return drawn


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
    # The task polls twice a second while events keep flowing: wait for the number
    # to move (a loaded machine may take a while), not for a fixed time.
    try:
        page.wait_for_function(
            "before => Number(document.querySelector('.eventlab-dashboard td.el-length')"
            "?.textContent) > before",
            arg=int(before[0]),
            timeout=20_000,
        )
    except sync_api.TimeoutError:
        pytest.fail(f"the dashboard's stream length stayed at {before} for 20 s")
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

    # Each chart's SVG as the page holds it: an <img> with a data: URL (JupyterLab's
    # SVG renderer) or inline markup. The marks inside are checked in Python.
    drawn = page.eval_on_selector_all(
        ".jp-RenderedSVG",
        "els => els.map(e => {"
        " const img = e.querySelector('img');"
        " if (img) return {loaded: img.complete && img.naturalWidth > 0, src: img.src};"
        " const svg = e.querySelector('svg');"
        " return {loaded: !!svg, svg: svg ? svg.outerHTML : ''}; })",
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


def test_data_marks_count_what_vega_drew_and_nothing_in_a_blank_chart():
    """The mark check finds drawn data in a real chart, none in an empty or blank one."""
    frame = pd.DataFrame({"x": [1, 2, 3], "y": [3, 1, 2]})
    line = alt.Chart(frame).mark_line().encode(x="x:Q", y="y:Q")
    bars = alt.Chart(frame).mark_bar().encode(x="x:O", y="y:Q")
    assert _data_marks(vl_convert.vegalite_to_svg(line.to_dict())) >= 1
    assert _data_marks(vl_convert.vegalite_to_svg(bars.to_dict())) == len(frame)
    empty = line.properties(data=alt.Data(values=[]))
    assert _data_marks(vl_convert.vegalite_to_svg(empty.to_dict())) == 0
    blank = '<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><rect/></svg>'
    assert _data_marks(blank) == 0
    encoded = "data:image/svg+xml;base64," + base64.b64encode(blank.encode()).decode()
    assert _svg_of({"loaded": True, "src": encoded}) == blank
    assert _svg_of({"loaded": True, "src": "data:image/svg+xml," + quote(blank)}) == blank


def test_charts_draw_offline_and_the_dashboard_moves_in_jupyterlab(chromium, lab, tmp_path):
    """Run-all in JupyterLab with no network: six SVG charts with data marks, live numbers."""
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

    drawn = seen["drawn"][:CHARTS]
    assert len(drawn) == CHARTS, f"{len(drawn)} chart outputs, expected {CHARTS}"
    for n, output in enumerate(drawn, start=1):
        assert output["loaded"], f"chart {n} did not load in the page"
        svg = _svg_of(output)
        marks = _data_marks(svg)
        assert marks > 0, f"chart {n} has no drawn data marks:\n{svg[:2000]}"
        for failure in FAILURE_TEXTS:
            assert failure not in svg, f"chart {n} shows {failure!r}"
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


# -- the learner's walk ------------------------------------------------------------------

LESSON = re.compile(r"^notebooks/\d\d-[^/]+\.ipynb$")
LAB = re.compile(r"^labs/[^/]+/[^/]+\.ipynb$")
WALK_TIMEOUT = 1080  # the whole walk; it takes about 4-6 minutes on 2 loaded cores


def _course_copy(dest: Path) -> Path:
    """Copy the course (tracked and new files, not ignored ones) into a git repo of its own.

    The walk saves notebooks and grades labs; on a copy, the checkout stays as it
    was. The copy has the nbstripout filter that `make install` sets, so the walk
    can check that running everything leaves `git status` clean.
    """
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for name in listed:
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    git = ["git", "-C", str(dest), "-c", "user.name=walk", "-c", "user.email=walk@localhost"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "the course as cloned"], check=True)
    # then, as after a clone, `make install` defines the filter (stored notebooks pass it
    # unchanged: tests/test_jupyter.py); set now, it runs only on what the walk saves
    subprocess.run(
        ["make", "-s", "-C", str(dest), "git-filter", f"BIN={Path(sys.executable).parent}"],
        check=True,
        capture_output=True,
    )
    return dest


@pytest.fixture(scope="module")
def course_lab(tmp_path_factory) -> Iterator[dict[str, Any]]:
    """A fresh copy of the course and JupyterLab on it, started as `make lab` starts it."""
    tmp = tmp_path_factory.mktemp("walk")
    root = _course_copy(tmp_path_factory.mktemp("course"))
    port, token = _free_port(), secrets.token_hex(16)
    config = tmp / "config"
    config.mkdir()
    # The test's own user config: expose the app object so the walk can read the notebook model.
    (config / "jupyter_server_config.json").write_text(
        json.dumps({"LabApp": {"expose_app_in_browser": True}})
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVENTLAB_", "REDIS_URL"))}
    env |= {
        "JUPYTER_TOKEN": token,
        "JUPYTER_CONFIG_DIR": str(config),
        "JUPYTER_DATA_DIR": str(tmp / "data"),
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
        "IPYTHONDIR": str(tmp / "ipython"),
        "JUPYTER_PLATFORM_DIRS": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
    }
    log_path = tmp / "jupyter.log"
    log = log_path.open("w")
    started = time.monotonic()
    # `make lab` runs `.venv/bin/eventlab lab`; the walk adds only a port and no browser.
    server = subprocess.Popen(
        [sys.executable, "-m", "eventlab.cli", "lab", "--no-browser", "--port", str(port)],
        cwd=root,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        yield {
            "base": f"http://127.0.0.1:{port}",
            "token": token,
            "root": root,
            "started": started,
            "log": log_path,
            "server": server,
        }
    finally:
        server.terminate()  # JupyterLab shuts its kernels down on SIGTERM
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
        broker_mod.down(state=root / ".eventlab")


def _api(lab: dict[str, Any], method: str, path: str) -> Any:
    request = urllib.request.Request(  # noqa: S310 - our own loopback server
        f"{lab['base']}{path}", method=method, headers={"Authorization": f"token {lab['token']}"}
    )
    with urllib.request.urlopen(request, timeout=10) as reply:  # noqa: S310
        body = reply.read()
    return json.loads(body) if body else None


def _links(page) -> list[str]:
    """Paths (from the course root) of the local links in the current notebook's prose.

    JupyterLab points a relative link at ``/files/<path>`` and opens it in a tab when clicked.
    """
    hrefs = page.evaluate(
        "() => [...window.jupyterapp.shell.currentWidget.node"
        ".querySelectorAll('.jp-RenderedMarkdown a[href]')].map(a => a.href)"
    )
    paths = []
    for href in hrefs:
        parts = urlsplit(href)
        if parts.hostname == "127.0.0.1" and parts.path.startswith("/files/"):
            paths.append(unquote(parts.path.removeprefix("/files/")))
    return paths


def _current_path(page) -> str | None:
    return page.evaluate(
        "() => { const w = window.jupyterapp.shell.currentWidget;"
        " return w && w.context ? w.context.path : null; }"
    )


def _open_from_map(page, path: str, visit: walk.Visit) -> None:
    """Go back to the course map's tab and click the link to ``path``.

    Tried up to three times: under load, a map restored after a page reload may
    re-render its prose while the click waits, or a dialog may cover it. What got
    in the way is kept as a note on the visit (a dialog's text, a failed try).
    """
    link_css = (
        f".jp-NotebookPanel:not(.lm-mod-hidden) .jp-RenderedMarkdown a[href*='/files/{path}?']"
    )
    for attempt in range(1, 4):
        page.evaluate(
            f"window.jupyterapp.commands.execute('docmanager:open', {{path: '{_jupyter.LANDING}'}})"
        )
        page.wait_for_function(f"() => ({_CURRENT_PATH_JS}) === '{_jupyter.LANDING}'")
        for dialog in page.locator(".jp-Dialog").all_text_contents():
            visit.notes.append(f"a dialog was open: {' '.join(dialog.split())[:200]}")
            page.keyboard.press("Escape")
        link = page.locator(link_css).first
        try:
            link.scroll_into_view_if_needed(timeout=20_000)
            try:
                link.click(timeout=10_000)
            except sync_api.TimeoutError:  # a restored map may keep the cell hidden
                link.dispatch_event("click", timeout=10_000)
            page.wait_for_function(f"() => ({_CURRENT_PATH_JS}) === '{path}'", timeout=60_000)
        except sync_api.TimeoutError as error:
            shot = ARTIFACTS / f"walk-{Path(path).stem}-open-try{attempt}.png"
            page.screenshot(path=str(shot))
            visit.notes.append(f"try {attempt} to open it from the map failed ({shot.name})")
            if attempt == 3:
                message = f"{path}: its link on the course map does not open it"
                raise AssertionError(message) from error
        else:
            return


_CURRENT_PATH_JS = (
    "(() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
    " return w && w.context ? w.context.path : null; })()"
)


def _save_and_close(page, lab: dict[str, Any]) -> None:
    """Save the notebook (outputs and all), close its tab, shut its kernel down."""
    path = _current_path(page)
    page.evaluate(
        "async () => { const w = window.jupyterapp.shell.currentWidget;"
        " await w.context.save(); w.dispose(); }"
    )
    for session in _api(lab, "GET", "/api/sessions"):
        if session["path"] == path:
            _api(lab, "DELETE", f"/api/sessions/{session['id']}")


def _reload_shows_rerun_line(page, visit: walk.Visit) -> None:
    """After a reload, the saved dashboard is the line asking for a re-run; no widget error."""
    page.reload()
    page.wait_for_function(f"() => ({_CURRENT_PATH_JS}) === '{visit.path}'", timeout=60_000)
    # The notebook model as reloaded from disk: the dashboard's output is text only.
    try:
        page.wait_for_function(
            "gone => { const w = window.jupyterapp.shell.currentWidget;"
            " return w.content.widgets.some(c => c.model.type === 'code' &&"
            " c.model.outputs.toJSON().some(o => o.data && !o.data["
            + repr(_jupyter.WIDGET_MIME)
            + "]"
            " && [].concat(o.data['text/plain'] || []).join('').includes(gone))); }",
            arg=_jupyter.DASHBOARD_GONE,
            timeout=30_000,
        )
    except sync_api.TimeoutError:
        visit.problems.append(f"after a reload no output says {_jupyter.DASHBOARD_GONE!r}")
    with contextlib.suppress(sync_api.TimeoutError):  # for the screenshot only
        page.get_by_text(_jupyter.DASHBOARD_GONE).last.scroll_into_view_if_needed(timeout=5_000)
    page.screenshot(path=str(ARTIFACTS / f"walk-{Path(visit.path).stem}-reloaded.png"))
    walk.check_page_text(page, visit)


def _terminal_finds_eventlab(page, lab: dict[str, Any]) -> str:
    """Open JupyterLab's terminal, type `command -v eventlab` into it, return what it found."""
    out = lab["root"] / ".walk-terminal.txt"
    page.evaluate("window.jupyterapp.commands.execute('terminal:create-new')")
    page.wait_for_selector(".jp-Terminal:not(.lm-mod-hidden) .xterm", timeout=30_000)
    page.click(".jp-Terminal:not(.lm-mod-hidden) .xterm")
    page.keyboard.type(f"command -v eventlab > {out}; eventlab --help >> {out} 2>&1\n")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (out.is_file() and "usage" in out.read_text()):
        time.sleep(0.25)
    found = out.read_text() if out.is_file() else ""
    out.unlink(missing_ok=True)
    page.evaluate("async () => { window.jupyterapp.shell.currentWidget.dispose(); }")
    for terminal in _api(lab, "GET", "/api/terminals"):
        _api(lab, "DELETE", f"/api/terminals/{terminal['name']}")
    return found


def _open_course_map(page, lab: dict[str, Any], report: dict[str, Any]) -> walk.Visit:
    """Open the address `eventlab lab` prints; time it from the start of `eventlab lab`."""
    deadline = time.monotonic() + 120
    printed = None
    while printed is None:  # JupyterLab prints its address once the broker is up and it serves
        printed = re.search(r"http://127\.0\.0\.1:\d+/\S*\?token=", lab["log"].read_text())
        if printed is None and (lab["server"].poll() is not None or time.monotonic() > deadline):
            pytest.fail(f"`eventlab lab` did not start:\n{lab['log'].read_text()}")
        time.sleep(0.1)
    page.goto(printed[0] + lab["token"])
    page.wait_for_selector(
        ".jp-NotebookPanel:not(.lm-mod-hidden) .jp-RenderedMarkdown a[href*='/files/']",
        timeout=120_000,
    )
    report["make lab to course map (s)"] = round(time.monotonic() - lab["started"], 1)
    visit = walk.Visit(_jupyter.LANDING)
    if _current_path(page) != _jupyter.LANDING:
        visit.problems.append(f"JupyterLab opened {_current_path(page)}, not the course map")
    if page.locator(".jp-Dialog").count():
        visit.problems.append("a dialog covers the course map")
    walk.check_page_text(page, visit)
    page.screenshot(path=str(ARTIFACTS / "walk-00-course-map.png"))
    visit.problems += [f"dead link {p}" for p in _links(page) if not (lab["root"] / p).exists()]
    return visit


def _walk_notebook(page, lab: dict[str, Any], path: str) -> walk.Visit:
    """Open ``path`` from its link on the map, Run All, check it, press buttons, close it."""
    visit = walk.Visit(path)
    _open_from_map(page, path, visit)
    state = walk.run_all(page, visit, timeout=150)
    visit.notes.append(f"{state.get('total')} code cells")
    visit.problems += [f"dead link {p}" for p in _links(page) if not (lab["root"] / p).exists()]
    walk.check_page_text(page, visit)
    walk.check_charts(page, visit)
    if LAB.match(path):
        text = page.evaluate("() => window.jupyterapp.shell.currentWidget.node.textContent")
        score = re.search(r"score \d+/\d+", text)
        visit.notes.append(score[0] if score else "no score")
        if score is None:
            visit.problems.append("the grade cell printed no score")
    walk.press_every_button(page, visit)
    stem = Path(path).stem
    page.screenshot(path=str(ARTIFACTS / f"walk-{stem}.png"))
    panel = ".jp-NotebookPanel:not(.lm-mod-hidden)"
    charts = page.locator(f"{panel} .jp-RenderedSVG img")
    for n in range(charts.count()):
        charts.nth(n).scroll_into_view_if_needed()
        page.wait_for_timeout(150)
        charts.nth(n).screenshot(path=str(ARTIFACTS / f"walk-{stem}-chart{n + 1}.png"))
    dash = page.locator(f"{panel} .eventlab-dashboard")
    if dash.count():
        dash.first.scroll_into_view_if_needed()
        dash.first.screenshot(path=str(ARTIFACTS / f"walk-{stem}-dash.png"))
        page.evaluate("async () => window.jupyterapp.shell.currentWidget.context.save()")
        _reload_shows_rerun_line(page, visit)
    _save_and_close(page, lab)
    return visit


@pytest.mark.timeout(WALK_TIMEOUT)
def test_the_learners_walk_through_every_lesson_and_lab(chromium, course_lab):
    """From `eventlab lab` on: the map, every lesson Run All, every lab graded, nothing broken."""
    ARTIFACTS.mkdir(exist_ok=True)
    lab = course_lab
    root: Path = lab["root"]
    blocked: list[str] = []
    report: dict[str, Any] = {}

    def route(r) -> None:
        if _loopback(r.request.url):
            r.continue_()
        else:
            blocked.append(r.request.url)
            r.abort()

    with sync_api.sync_playwright() as pw:
        context = pw.chromium.launch_persistent_context(
            str(root.parent / "profile"),
            executable_path=chromium,
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1400, "height": 1000},
        )
        try:
            page = context.pages[0] if context.pages else context.new_page()
            page.route("**/*", route)
            visits = [_open_course_map(page, lab, report)]
            links = _links(page)
            lessons = list(dict.fromkeys(p for p in links if LESSON.match(p)))
            labs = list(dict.fromkeys(p for p in links if LAB.match(p)))
            report["terminal: command -v eventlab"] = _terminal_finds_eventlab(page, lab)
            visits += [_walk_notebook(page, lab, path) for path in [*lessons, *labs]]
        finally:
            context.close()
            (ARTIFACTS / "browser-blocked.txt").write_text("".join(f"{u}\n" for u in blocked))

    # What a learner sees: every save went through the post-save hook, so a lesson
    # whose outputs alone changed is not listed (tests/test_jupyter.py pins why).
    status = subprocess.run(
        ["git", "-C", str(root), "status", "--porcelain"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    report["git status after the walk"] = status.splitlines()
    if status:
        diff = subprocess.run(
            ["git", "-C", str(root), "diff"], capture_output=True, text=True, check=False
        ).stdout
        (ARTIFACTS / "walk-git-diff.txt").write_text(diff)
    report["Run All seconds"] = {v.path: round(v.seconds, 1) for v in visits if v.seconds}
    report["problems"] = {v.path: v.problems for v in visits if v.problems}
    report["notes"] = {v.path: v.notes for v in visits if v.notes}
    (ARTIFACTS / "walk.json").write_text(json.dumps(report, indent=1, ensure_ascii=False))
    print(json.dumps(report, indent=1, ensure_ascii=False))  # noqa: T201 - the walk's report

    assert len(lessons) == len(list((root / "notebooks").glob("[0-9][0-9]-*.ipynb"))) == 13
    assert len(labs) == len(list((root / "labs").glob("*/*.ipynb"))) >= 8
    assert "eventlab" in report["terminal: command -v eventlab"]
    assert report["problems"] == {}
    assert status == "", "running the course left changes in git status"
    assert not [u for u in blocked if "cdn" in u or "vega" in u], blocked
