"""How long grading takes, per lab: the reference solution, the generated lab, the partial.

Issue 8 asks for at most 20 s per lab on a 2-core machine. Baseline measured in
the same run: the grader's fixed cost (one child process running one empty
check), so each lab's figure reads as overhead + its own checks.

    .venv/bin/python benchmarks/grading.py [--labs 03-idempotent-consumer ...] [--json]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path

from eventlab import broker, labs
from eventlab.grading import grade

ROOT = Path(__file__).resolve().parent.parent
_EMPTY_CHECK = '''
from eventlab.grading import check

@check(points=1, hint="-")
def empty(ctx):
    """Nothing."""
'''


def _variant(lab: str, variant: str, tmp: Path) -> Path:
    source = ROOT / ("labs" if variant == "generated" else "solutions") / lab
    folder = tmp / variant / lab
    shutil.copytree(source, folder, ignore=shutil.ignore_patterns("score.*", "__pycache__"))
    if variant == "partial":
        shutil.copy(folder / "partial.py", folder / "exercise.py")
    return folder


def _timed(folder: Path, url: str) -> tuple[float, int, int]:
    began = time.perf_counter()
    score = grade(folder, url=url, quiet=True, out=folder / "out")
    return time.perf_counter() - began, score.score, score.max


def main() -> None:
    """Grade each lab's three variants on a private broker; print seconds and scores."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--labs", nargs="*", default=None, help="lab ids (default: all)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    ids = args.labs or [p.name for p in labs.lab_dirs(ROOT / "solutions")]
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        handle = broker.up(state=tmp / "broker", port=0, persistence="none")
        try:
            empty = tmp / "empty" / "00-empty"
            empty.mkdir(parents=True)
            (empty / "checks.py").write_text(_EMPTY_CHECK)
            (empty / "exercise.py").write_text("")
            baseline = _timed(empty, handle.url)[0]
            results: dict[str, dict[str, object]] = {}
            for lab in ids:
                row: dict[str, object] = {}
                for variant in ("solution", "generated", "partial"):
                    seconds, score, most = _timed(_variant(lab, variant, tmp), handle.url)
                    row[variant] = {"seconds": round(seconds, 2), "score": score, "max": most}
                results[lab] = row
        finally:
            handle.stop()
    if args.json:
        print(json.dumps({"baseline_seconds": round(baseline, 2), "labs": results}))
        return
    print(f"grader overhead (one empty check): {baseline:.2f} s")
    print(f"{'lab':28} {'solution':>16} {'generated':>16} {'partial':>16}  worst/overhead")
    for lab, row in results.items():
        cells = [row[v] for v in ("solution", "generated", "partial")]
        text = [f"{c['seconds']:5.2f} s {c['score']:>2}/{c['max']:<2}" for c in cells]  # type: ignore[index]
        worst = max(float(c["seconds"]) for c in cells)  # type: ignore[index]
        print(f"{lab:28} {text[0]:>16} {text[1]:>16} {text[2]:>16}  {worst / baseline:5.1f}x")


if __name__ == "__main__":
    main()
