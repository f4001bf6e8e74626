"""The grader's child process: import the learner's code, run checks, report over a sealed pipe.

Run as ``python -m eventlab._grader_child FD`` by :func:`eventlab.grading.grade`,
which enforces timeouts and output limits and decides the score. Two processes:

* the **supervisor** (this process) makes itself a child subreaper
  (``prctl(PR_SET_CHILD_SUBREAPER)``, Linux) and forks the worker. Every
  process the learner's code starts stays its descendant, even after
  ``setsid`` or a double fork; when the worker ends, or the grader sends
  SIGTERM, the supervisor SIGKILLs and reaps every descendant, then exits
  with the worker's status.
* the **worker** reads its instructions from stdin in two parts: first the
  lab, the seed and a random per-run token (before any learner code runs),
  then the checks' source text (only after the learner's ``exercise.py`` was
  imported once, so its import-time code cannot read them, and no path to an
  instructor's hidden checks is ever given). Each report is one line on the
  pipe ``FD``: ``<hmac> <seq> <json>``, an HMAC-SHA256 under the token over a
  sequence number and the record. The grader drops lines whose HMAC or
  sequence number is wrong, so appending "passed" lines to that pipe (or to
  any file) earns nothing.

Learner code runs in the worker, in the same process as the checks: it could
still, with effort, dig the token out of memory or patch the checks. This
makes forging non-trivial, not impossible; docs/grading.md says what is and is
not protected (grade untrusted submissions in a container).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import hmac
import inspect
import itertools
import json
import os
import signal
import sys
import time
import traceback
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eventlab import _env
from eventlab.grading import CheckContext

_PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h
_REAP_BUDGET = 5.0  # seconds the supervisor spends killing descendants
_MESSAGE_LIMIT = 1_500  # characters of a report; keeps every line under PIPE_BUF (atomic)


class _Stop(Exception):  # noqa: N818 - a signal, not an error
    """The grader asked the supervisor to stop (SIGTERM)."""


def _make_subreaper() -> bool:
    """Become the reaper of every orphaned descendant (Linux); return whether it worked."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return int(libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


def _children(parent: int) -> list[int]:
    """Pids whose parent is ``parent`` (read from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # it ended while we looked
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == parent:
            found.append(int(entry.name))
    return found


def _kill_descendants() -> None:
    """SIGKILL and reap every descendant: orphans of killed ones come to us, so repeat."""
    me = os.getpid()
    deadline = time.monotonic() + _REAP_BUDGET
    while time.monotonic() < deadline:
        for pid in _children(me):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        try:
            while os.waitpid(-1, os.WNOHANG)[0] != 0:
                pass
        except ChildProcessError:
            return  # no child left, alive or zombie
        time.sleep(0.005)


def _on_term(_signum: int, _frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    raise _Stop


def _supervise(worker: int) -> int:
    """Wait for the worker, then kill every descendant; return the exit status to use."""
    status = 1
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # a pending stop lands here
        while True:
            pid, raw = os.waitpid(-1, 0)
            if pid == worker:
                status = os.waitstatus_to_exitcode(raw)
                break
    except (_Stop, ChildProcessError):
        pass
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _kill_descendants()
    return status if status >= 0 else 128 - status


def _channel(fd: int, token: bytes) -> Callable[[dict[str, Any]], None]:
    """Return ``send(record)``: one authenticated line per record on ``fd``."""
    numbers = itertools.count()

    def send(record: dict[str, Any]) -> None:
        body = json.dumps(record, separators=(",", ":"))
        number = next(numbers)
        mac = hmac.new(token, f"{number} {body}".encode(), "sha256").hexdigest()
        os.write(fd, f"{mac} {number} {body}\n".encode())

    return send


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


def _load(source: str, name: str) -> types.ModuleType:
    """Compile checks from their source text (no file path of hidden checks is known here)."""
    module = types.ModuleType(name)
    module.__file__ = f"<checks {name}>"
    sys.modules[name] = module
    exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102 - the instructor's checks, sent by the grader
    return module


def _worker(fd: int) -> int:
    """Run the checks the grader sends on stdin, reporting each over ``fd``."""
    stdin = sys.stdin.buffer
    first = json.loads(stdin.readline())
    send = _channel(fd, bytes.fromhex(first.pop("token")))
    lab = Path(first["lab"])
    sys.path.insert(0, str(lab))  # the learner's exercise may import its neighbours
    url = os.environ[_env.REDIS_URL]  # set by the grader (always)
    checks: list[dict[str, Any]] = first["checks"]
    modules: list[types.ModuleType] | None = None
    for index in range(int(first["start"]), len(checks)):
        spec = checks[index]
        namespace = f"{first['prefix']}-c{index}"
        os.environ[_env.NAMESPACE] = namespace
        send({"event": "start", "index": index})
        began = time.monotonic()
        ctx = CheckContext(
            lab=lab, url=url, namespace=namespace, seed=int(first["seed"]),
            timeout=float(spec["timeout"]),
        )  # fmt: skip
        try:
            ctx.exercise  # noqa: B018 - import now so import errors are reported as such
        except BaseException as exc:  # noqa: BLE001 - any failure of learner code is a report line
            message = f"exercise.py does not import: {_describe(exc)}"[:_MESSAGE_LIMIT]
            send({"event": "import-error", "index": index, "message": message})
            return 0
        send({"event": "imported", "index": index})
        try:
            if modules is None:
                # Only now, after the learner's module ran its import-time code,
                # does the grader send the checks' source.
                sources = json.loads(stdin.readline())
                with contextlib.suppress(OSError):
                    devnull = os.open(os.devnull, os.O_RDONLY)
                    os.dup2(devnull, 0)
                    os.close(devnull)
                modules = [
                    _load(text, f"_eventlab_checks_{number}") for number, text in enumerate(sources)
                ]
                del sources
            function = getattr(modules[int(spec["module"])], spec["function"])
            outcome = function(ctx)
            if inspect.isawaitable(outcome):
                asyncio.run(_awaited(outcome))
        except BaseException as exc:  # noqa: BLE001 - learner code may raise anything, even SystemExit
            record: dict[str, Any] = {"event": "failed", "message": _describe(exc)[:_MESSAGE_LIMIT]}
        else:
            record = {"event": "passed"}
        finally:
            ctx.close()
        record.update({"index": index, "seconds": time.monotonic() - began})
        send(record)
    return 0


async def _awaited(outcome: Any) -> None:
    await outcome


def main(argv: list[str]) -> int:
    """Fork the worker under a subreaping supervisor; return the worker's exit status."""
    fd = int(argv[0])
    _make_subreaper()
    # SIGTERM waits (blocked) until the supervisor is ready to kill descendants.
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    signal.signal(signal.SIGTERM, _on_term)
    worker = os.fork()
    if worker == 0:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        os.set_inheritable(fd, False)  # noqa: FBT003 - learner subprocesses never get the report pipe
        code = 1
        try:
            code = _worker(fd)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
    os.close(fd)  # only the worker reports
    with contextlib.suppress(OSError):
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)  # only the worker reads the grader's instructions
        os.close(devnull)
    return _supervise(worker)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
