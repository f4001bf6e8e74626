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
import resource
import select
import signal
import sys
import time
import traceback
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

from eventlab import _labkit
from eventlab.grading import _TOO_MANY_PROCESSES as TOO_MANY_PROCESSES
from eventlab.grading import MEMORY_LIMIT, PROCESS_LIMIT, CheckContext

_PR_SET_CHILD_SUBREAPER = 36  # linux/prctl.h
_REAP_BUDGET = 5.0  # seconds the supervisor spends killing descendants
_MESSAGE_LIMIT = 1_500  # characters of a report; keeps every line under PIPE_BUF (atomic)
_IMPORT_CPU = 10.0  # CPU seconds for the first import of the learner's module and the checks
_WATCH_EVERY = 0.1  # seconds between two counts of the worker's descendants
_CONTROL_WAIT = 10.0  # seconds a check waits for the grader to answer a control request
# Modules a learner could look for to tell a graded run from a normal one: kept
# loaded (the checks hold them) but out of sys.modules and the package's namespace.
_GRADER_MODULES = (
    "eventlab._crash",
    "eventlab._faultproxy",
    "eventlab._grader_child",
    "eventlab._labkit",
    "eventlab.grading",
)
_KEPT: dict[str, Any] = {}  # the modules taken out of sys.modules, kept alive


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


def _parents() -> dict[int, int]:
    """Every process's parent, read from /proc: ``{pid: ppid}``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # it ended while we looked
        found[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return found


def _children(parent: int) -> list[int]:
    """Pids whose parent is ``parent`` (read from /proc)."""
    return [pid for pid, ppid in _parents().items() if ppid == parent]


def _descendants(root: int) -> int:
    """How many processes descend from ``root`` (orphans come back to it: it is a subreaper)."""
    below: dict[int, list[int]] = {}
    for pid, ppid in _parents().items():
        below.setdefault(ppid, []).append(pid)
    count, todo = 0, list(below.get(root, []))
    while todo:
        pid = todo.pop()
        count += 1
        todo.extend(below.get(pid, []))
    return count


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
    """Wait for the worker, then kill every descendant; return the exit status to use.

    Meanwhile it counts the worker's descendants: more than PROCESS_LIMIT (a
    fork loop; RLIMIT_NPROC does not bind root) kills them all at once, and the
    status says so (:data:`TOO_MANY_PROCESSES`).
    """
    status = 1
    me = os.getpid()
    try:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # a pending stop lands here
        next_count = time.monotonic() + _WATCH_EVERY
        while True:
            pid, raw = os.waitpid(-1, os.WNOHANG)
            if pid == worker:
                status = os.waitstatus_to_exitcode(raw)
                break
            if pid:
                continue  # an orphan re-parented to us: reaped
            if time.monotonic() >= next_count:
                next_count = time.monotonic() + _WATCH_EVERY
                if _descendants(me) > PROCESS_LIMIT:
                    status = TOO_MANY_PROCESSES
                    break
            time.sleep(0.005)
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
    if isinstance(exc, MemoryError):
        where = _learner_frame(exc)
        suffix = f" (at {where})" if where else ""
        return f"MemoryError: used more than the {MEMORY_LIMIT >> 20} MB memory limit{suffix}"
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
    try:
        exec(compile(source, module.__file__, "exec"), module.__dict__)  # noqa: S102 - the instructor's checks, sent by the grader
    finally:
        sys.modules.pop(name, None)  # defined; no longer listed where learner code looks
    return module


def _scrub() -> None:
    """Take the grader's modules out of ``sys.modules`` (and ``eventlab.*``): no tell left there."""
    package = sys.modules.get("eventlab")
    for name in _GRADER_MODULES:
        module = sys.modules.pop(name, None)
        if module is not None:
            _KEPT[name] = module
        if package is not None:
            with contextlib.suppress(AttributeError):
                delattr(package, name.rsplit(".", 1)[1])
    main = sys.modules.get("__main__")
    if main is not None and getattr(main, "__file__", None):
        _KEPT["__main__"] = main
        plain = types.ModuleType("__main__")
        plain.__dict__["__builtins__"] = main.__dict__.get("__builtins__")
        sys.modules["__main__"] = plain


def _unscrub() -> None:
    """Put the grader's modules back while the checks are compiled (they import them)."""
    package = sys.modules.get("eventlab")
    for name, module in _KEPT.items():
        if name == "__main__":
            continue
        sys.modules[name] = module
        if package is not None:
            setattr(package, name.rsplit(".", 1)[1], module)


def _plain_process() -> None:
    """Look like a plain ``python``: argv and ``/proc/self/cmdline`` name no grader module."""
    sys.argv[:] = [""]
    with contextlib.suppress(AttributeError, TypeError):
        sys.orig_argv[:] = [sys.executable]  # type: ignore[attr-defined,unused-ignore]
    sys.dont_write_bytecode = True  # leave no __pycache__ in the learner's folder
    with contextlib.suppress(AttributeError, OSError, ValueError):
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        sys.stderr.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end (stat fields 48, 49)
        name = Path(sys.executable).name.encode()[: max(end - start - 1, 0)]
        with Path("/proc/self/mem").open("r+b", buffering=0) as memory:
            memory.seek(start)
            memory.write(name + b"\0" * (end - start - len(name)))
    except (OSError, ValueError, IndexError):
        pass  # not Linux, or /proc/self/mem not writable: argv still shows the module


def _controller(send: Callable[[dict[str, Any]], None], fd: int) -> Callable[..., Any]:
    """Return ``request(op, **fields) -> reply``: ask the grader's fault proxy, wait for it."""
    pending = bytearray()

    def request(op: str, **fields: Any) -> dict[str, Any]:
        send({"event": "control", "op": op, **fields})
        deadline = time.monotonic() + _CONTROL_WAIT
        while b"\n" not in pending:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return {"ok": False}
            chunk = os.read(fd, 4096)
            if not chunk:
                return {"ok": False}
            pending.extend(chunk)
        line, _, rest = bytes(pending).partition(b"\n")
        pending[:] = rest
        reply = json.loads(line)
        return reply if isinstance(reply, dict) else {"ok": False}

    return request


def _limit_resources() -> None:
    """Memory (address space) for the worker and all it starts; no core files."""
    for kind, value in ((resource.RLIMIT_AS, MEMORY_LIMIT), (resource.RLIMIT_CORE, 0)):
        with contextlib.suppress(ValueError, OSError):
            _, hard = resource.getrlimit(kind)
            soft = value if hard == resource.RLIM_INFINITY else min(value, hard)
            resource.setrlimit(kind, (soft, hard))


def _limit_cpu(seconds: float) -> None:
    """Allow ``seconds`` more CPU time from now (SIGXCPU past it: the grader names the cause)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    used = usage.ru_utime + usage.ru_stime
    with contextlib.suppress(ValueError, OSError):
        _, hard = resource.getrlimit(resource.RLIMIT_CPU)
        soft = int(used + seconds) + 1
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _worker(fd: int) -> int:
    """Run the checks the grader sends on stdin, reporting each over ``fd``."""
    _limit_resources()
    stdin = sys.stdin.buffer
    first = json.loads(stdin.readline())
    send = _channel(fd, bytes.fromhex(first.pop("token")))
    lab = Path(first["lab"])
    sys.path.insert(0, str(lab))  # the learner's exercise may import its neighbours
    url = os.environ["REDIS_URL"]
    checks: list[dict[str, Any]] = first["checks"]
    modules: list[types.ModuleType] | None = None
    for index in range(int(first["start"]), len(checks)):
        spec = checks[index]
        namespace = f"{first['prefix']}-c{index}"
        os.environ["EVENTLAB_NAMESPACE"] = namespace
        send({"event": "start", "index": index})
        _limit_cpu(float(spec["timeout"]) + (_IMPORT_CPU if modules is None else 0.0))
        began = time.monotonic()
        ctx = CheckContext(
            lab=lab, url=url, namespace=namespace, seed=int(first["seed"]),
            timeout=float(spec["timeout"]),
        )  # fmt: skip
        try:
            _scrub()
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
                # The grader's answers to control requests come on the same pipe,
                # on a private descriptor (not inherited); stdin becomes /dev/null.
                control = os.dup(0)
                _labkit._CONTROL = _controller(send, control)  # noqa: SLF001 - the kit's hook
                with contextlib.suppress(OSError):
                    devnull = os.open(os.devnull, os.O_RDONLY)
                    os.dup2(devnull, 0)
                    os.close(devnull)
                _unscrub()
                modules = [
                    _load(text, f"_eventlab_checks_{number}") for number, text in enumerate(sources)
                ]
                del sources
                _scrub()
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
    _plain_process()
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
