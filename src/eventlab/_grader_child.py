"""The grader's child process: import the learner's code, run checks, write one line per result.

Run as ``python -m eventlab._grader_child PLAN RESULTS START PREFIX`` by
:func:`eventlab.grading.grade`, which enforces timeouts and output limits and
kills this process group when a check cannot finish. Results go to a file, not
stdout, so whatever the learner prints cannot corrupt them.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from eventlab.grading import CheckContext, _import_file


def _write(results: Any, record: dict[str, Any]) -> None:
    results.write(json.dumps(record) + "\n")
    results.flush()


def _describe(exc: BaseException) -> str:
    """One line naming the exception and the learner's line it came from."""
    if isinstance(exc, SyntaxError):
        return f"SyntaxError in {Path(exc.filename or '?').name} line {exc.lineno}: {exc.msg}"
    if isinstance(exc, NotImplementedError):
        where = _learner_frame(exc)
        return f"not implemented yet ({where}): replace `raise NotImplementedError` with your code"
    if isinstance(exc, AssertionError) and str(exc):
        return str(exc).splitlines()[0][:400]
    where = _learner_frame(exc)
    text = str(exc).splitlines()[0][:300] if str(exc) else ""
    suffix = f" (at {where})" if where else ""
    return f"{type(exc).__name__}: {text}{suffix}"


def _learner_frame(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    for frame in reversed(frames):
        if Path(frame.filename).name == "exercise.py":
            return f"exercise.py line {frame.lineno}, in {frame.name}"
    return ""


def main(argv: list[str]) -> int:
    """Run the checks of the plan from index ``START`` on; return 0."""
    plan_path, results_path, start_text, prefix = argv
    plan = json.loads(Path(plan_path).read_text())
    lab = Path(plan["lab"])
    sys.path.insert(0, str(lab))  # the learner's exercise may import its neighbours
    url = os.environ["REDIS_URL"]
    cached: dict[str, Any] = {}
    with Path(results_path).open("a") as results:
        for index in range(int(start_text), len(plan["checks"])):
            spec = plan["checks"][index]
            namespace = f"{prefix}-c{index}"
            os.environ["EVENTLAB_NAMESPACE"] = namespace
            _write(results, {"event": "start", "index": index})
            began = time.monotonic()
            ctx = CheckContext(
                lab=lab, url=url, namespace=namespace, seed=int(plan["seed"]),
                timeout=float(spec["timeout"]),
            )  # fmt: skip
            try:
                ctx.exercise  # noqa: B018 - import now so import errors are reported as such
            except BaseException as exc:  # noqa: BLE001 - any failure of learner code is a report line
                message = f"exercise.py does not import: {_describe(exc)}"
                _write(results, {"event": "import-error", "index": index, "message": message})
                return 0
            _write(results, {"event": "imported", "index": index})
            try:
                if spec["file"] not in cached:
                    cached[spec["file"]] = _import_file(
                        Path(spec["file"]), f"_eventlab_checks_{len(cached)}"
                    )
                function = getattr(cached[spec["file"]], spec["function"])
                outcome = function(ctx)
                if inspect.isawaitable(outcome):
                    asyncio.run(_awaited(outcome))
            except BaseException as exc:  # noqa: BLE001 - learner code may raise anything, even SystemExit
                record: dict[str, Any] = {"event": "failed", "message": _describe(exc)}
            else:
                record = {"event": "passed"}
            finally:
                ctx.close()
            record.update({"index": index, "seconds": time.monotonic() - began})
            _write(results, record)
    return 0


async def _awaited(outcome: Any) -> None:
    await outcome


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
