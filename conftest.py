"""Root pytest hooks: lessons under nbval get their own broker, and their run times are reported.

The lessons (``notebooks/*.ipynb``) run under ``--nbval-lax`` in the same
environment. Their kernels inherit ``EVENTLAB_STATE`` pointing at a private
state folder, so the test run starts (and afterwards stops) its own broker and
never touches a learner's ``.eventlab/``.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import pytest

_STATE = Path(tempfile.gettempdir()) / f"eventlab-nbval-{os.getpid()}"
_NOTEBOOK_SECONDS: dict[str, float] = defaultdict(float)


def pytest_configure(config: pytest.Config) -> None:  # noqa: ARG001 - hook signature
    """Point notebook kernels at a private broker state folder."""
    _STATE.mkdir(parents=True, exist_ok=True)
    os.environ["EVENTLAB_STATE"] = str(_STATE)


def pytest_unconfigure(config: pytest.Config) -> None:  # noqa: ARG001 - hook signature
    """Stop the broker (and any demo cluster) the lessons started."""
    from eventlab import broker, cluster  # noqa: PLC0415 - after the environment is set

    broker.down(state=_STATE)
    for record in _STATE.glob("*/cluster/cluster.json"):  # a lesson's demo cluster (lesson 02)
        cluster.down(state=record.parent.parent)
    shutil.rmtree(_STATE, ignore_errors=True)


# Chart and widget outputs are JSON/SVG with random ids: never compared (their
# specs are tested with chart.to_dict() in tests/test_charts.py).
_SKIP_MIME = ("image/svg+xml", "text/html", "application/vnd.vegalite.v6+json")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Skip chart mime types when nbval compares a cell marked NBVAL_CHECK_OUTPUT."""
    for item in items:
        notebook = item.parent
        skips = getattr(notebook, "skip_compare", None)
        if item.path.suffix == ".ipynb" and skips is not None and not set(_SKIP_MIME) <= set(skips):
            notebook.skip_compare = (*skips, *_SKIP_MIME)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item):  # noqa: ANN201 - hookwrapper generator
    """Add up each notebook's cell times."""
    started = time.perf_counter()
    yield
    if item.path.suffix == ".ipynb":
        _NOTEBOOK_SECONDS[item.path.name] += time.perf_counter() - started


def pytest_terminal_summary(terminalreporter) -> None:  # noqa: ANN001 - pytest's reporter type is private
    """Print every lesson's run time (issue: each <= 60 s, all <= 8 minutes)."""
    if not _NOTEBOOK_SECONDS:
        return
    terminalreporter.section("lesson run times")
    for name, seconds in sorted(_NOTEBOOK_SECONDS.items()):
        terminalreporter.write_line(f"{name:55s} {seconds:6.1f} s")
    terminalreporter.write_line(f"{'all lessons':55s} {sum(_NOTEBOOK_SECONDS.values()):6.1f} s")
