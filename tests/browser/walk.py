"""The learner's walk through the course in a real browser, as helpers for tests/test_browser.py.

Everything here is generic: it reads JupyterLab's own model of the open notebook
(cells, outputs, kernel status) and the rendered page, never the contents of a
particular lesson, so lessons may gain cells, widgets and diagrams freely.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any

# JupyterLab's model of the notebook in the current tab: how far Run All got.
RUN_STATE = """() => {
  const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;
  if (!w || !w.content || !w.content.widgets || !w.context) return null;
  let total = 0, pending = 0;
  const errors = [], stderr = [];
  for (const cell of w.content.widgets) {
    if (cell.model.type !== 'code' || !cell.model.sharedModel.getSource().trim()) continue;
    total += 1;
    if (cell.model.executionCount === null) pending += 1;
    for (const out of cell.model.outputs.toJSON()) {
      if (out.output_type === 'error') errors.push(out.ename + ': ' + out.evalue);
      if (out.output_type === 'stream' && out.name === 'stderr') {
        stderr.push([].concat(out.text).join(''));
      }
    }
  }
  const kernel = w.sessionContext && w.sessionContext.session
    && w.sessionContext.session.kernel;
  return {path: w.context.path, total, pending, errors, stderr,
          status: kernel ? kernel.status : 'none', dirty: w.context.model.dirty};
}"""

# Each chart's SVG put into the page on its own (so its @font-face applies alone),
# then every text element's box compared with the SVG's box.
CHART_TEXT = """async () => {
  const w = window.jupyterapp.shell.currentWidget;
  const results = [];
  const images = [...w.node.querySelectorAll('.jp-RenderedSVG img')];
  for (const img of images) {
    const src = img.getAttribute('src') || '';
    const comma = src.indexOf(',');
    const head = src.slice(0, comma), body = src.slice(comma + 1);
    const svgText = head.endsWith(';base64')
      ? new TextDecoder().decode(Uint8Array.from(atob(body), c => c.charCodeAt(0)))
      : decodeURIComponent(body);
    const host = document.createElement('div');
    host.style.cssText = 'position:fixed;left:0;top:0;opacity:0;pointer-events:none;z-index:-1';
    host.innerHTML = svgText;
    document.body.appendChild(host);
    const svg = host.querySelector('svg');
    const texts = svg ? [...svg.querySelectorAll('text')].filter(t => t.textContent.trim()) : [];
    texts.forEach(t => t.getBBox());
    await document.fonts.ready;
    await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
    const box = svg ? svg.getBoundingClientRect() : null;
    const clipped = [];
    for (const t of texts) {
      const r = t.getBoundingClientRect();
      if (r.left < box.left - 0.5 || r.right > box.right + 0.5 ||
          r.top < box.top - 0.5 || r.bottom > box.bottom + 0.5) {
        clipped.push(`${JSON.stringify(t.textContent)} at x ${(r.left - box.left).toFixed(1)}..` +
          `${(r.right - box.left).toFixed(1)} of ${box.width.toFixed(0)}, y ` +
          `${(r.top - box.top).toFixed(1)}..${(r.bottom - box.top).toFixed(1)} of ` +
          `${box.height.toFixed(0)}`);
      }
    }
    results.push({loaded: img.complete && img.naturalWidth > 0, svg: svgText,
                  texts: texts.length, clipped});
    host.remove();
  }
  return results;
}"""

# What the live dashboard shows, without what moves by itself (clock, idle times, rates).
DASHBOARD_STATE = """() => {
  const w = window.jupyterapp.shell.currentWidget;
  const dash = w && w.node.querySelector('.eventlab-dashboard');
  if (!dash) return null;
  const cells = [...dash.querySelectorAll('td.el-length, td.el-lag, td.el-pending, td.el-dead')];
  const status = dash.querySelector('.el-status');
  const faults = dash.querySelector('.el-faults');
  const message = dash.querySelector('.el-message');
  return {
    numbers: cells.map(c => c.textContent).join(' '),
    faults: faults ? faults.textContent : '',
    error: status && /not answering/.test(status.textContent) ? status.textContent : '',
    message: message ? message.textContent : '',
    buttons: [...dash.querySelectorAll('button')].map(b => b.textContent.trim()),
  };
}"""

FAILURE_TEXTS = (
    "model not found",
    "Error displaying widget",
    "renderer has not been properly enabled",
    "Error loading script",
    "Javascript Error",
)


@dataclass
class Visit:
    """What the walk saw in one notebook.

    Attributes:
        path: The notebook's path from the course root.
        seconds: Run All, from the command to every cell done and the kernel idle.
        problems: Everything that makes the walk fail, one line each.
        notes: Facts for the report (score printed, buttons pressed…).
    """

    path: str
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def wait_idle(page: Any, *, timeout: float) -> None:
    """Wait until the current notebook's kernel is idle (Run All before that does nothing)."""
    page.wait_for_function(
        "() => { const s = (" + RUN_STATE + ")(); return s && s.status === 'idle'; }",
        timeout=timeout * 1000,
        polling=200,
    )


def run_all(page: Any, visit: Visit, *, timeout: float) -> dict[str, Any]:
    """Run All through JupyterLab's command (the Run menu's) and wait for the end or an error."""
    wait_idle(page, timeout=60)
    started = time.monotonic()
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    deadline = started + timeout
    state: dict[str, Any] = {}
    while time.monotonic() < deadline:
        state = page.evaluate(RUN_STATE) or {}
        if state.get("errors"):
            break
        if state.get("total") and state.get("pending") == 0 and state.get("status") == "idle":
            break
        time.sleep(0.25)
    else:
        visit.problems.append(f"Run All did not finish in {timeout:.0f} s: {state}")
    visit.seconds = time.monotonic() - started
    visit.problems += [f"error output: {e}" for e in state.get("errors", [])]
    visit.problems += [
        f"traceback on stderr: {s[-300:]}" for s in state.get("stderr", []) if "Traceback" in s
    ]
    return state


def check_page_text(page: Any, visit: Visit) -> None:
    """Fail on any widget or renderer error text in the open notebook."""
    text = page.evaluate("() => window.jupyterapp.shell.currentWidget.node.textContent")
    visit.problems += [f"the page shows {t!r}" for t in FAILURE_TEXTS if t in text]


def check_charts(page: Any, visit: Visit) -> list[dict[str, Any]]:
    """Every chart drew, and no text of any chart sticks out of its SVG."""
    charts = page.evaluate(CHART_TEXT)
    for n, chart in enumerate(charts, start=1):
        if not chart["loaded"]:
            visit.problems.append(f"chart {n} did not load")
        if chart["texts"] and "@font-face" not in chart["svg"]:
            visit.problems.append(f"chart {n} does not embed the font it was measured with")
        visit.problems += [f"chart {n}: clipped text {c}" for c in chart["clipped"]]
    if charts:
        visit.notes.append(f"{len(charts)} chart(s), {sum(c['texts'] for c in charts)} texts")
    return charts


def press_every_button(page: Any, visit: Visit, *, timeout: float = 20.0) -> None:
    """Click each dashboard button; each must report done and change what the panel shows."""
    state = page.evaluate(DASHBOARD_STATE)
    if state is None:
        return
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .eventlab-dashboard")
    for label in state["buttons"]:
        before = page.evaluate(DASHBOARD_STATE)
        panel.get_by_role("button", name=label, exact=True).click()
        label_re = re.escape(label)
        try:
            page.wait_for_function(
                "([re]) => { const m = document.querySelector("
                "'.jp-NotebookPanel:not(.lm-mod-hidden) .eventlab-dashboard .el-message');"
                " return m && new RegExp(re + ': (done|failed)').test(m.textContent); }",
                arg=[label_re],
                timeout=timeout * 1000,
            )
        except Exception:  # noqa: BLE001 - reported as a problem, with what the panel said
            visit.problems.append(f"button {label!r} never reported: {before}")
            continue
        after = page.evaluate(DASHBOARD_STATE)
        if ": failed" in after["message"]:
            visit.problems.append(f"button {label!r} reported {after['message']!r}")
            continue
        deadline = time.monotonic() + timeout
        while _shown(after) == _shown(before) and time.monotonic() < deadline:
            time.sleep(0.25)
            after = page.evaluate(DASHBOARD_STATE)
        if _shown(after) == _shown(before):
            visit.problems.append(f"button {label!r} changed nothing on the dashboard")
        visit.notes.append(f"{label}: {after['message']}")


def _shown(state: dict[str, Any]) -> tuple[str, str, str]:
    return state["numbers"], state["faults"], state["error"]
