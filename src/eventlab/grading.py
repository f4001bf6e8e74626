"""Grade a lab: run its checks against the learner's ``exercise.py`` on a real broker.

A lab folder (``labs/NN-topic/`` or ``solutions/NN-topic/``) holds ``exercise.py``
(the learner's code) and ``checks.py`` (graded checks, each a function decorated
with :func:`check`). :func:`grade` runs every check in a separate process
(``python -m eventlab._grader_child``), on a fresh namespace of the broker
(``EVENTLAB_NAMESPACE`` unique per run, every key deleted afterwards), with a
hard timeout per check; learner code that fails to import, raises, loops
forever, never acks or floods the output costs the affected checks their
points and never hangs the grader. The score is printed as a table and written
to ``score.json`` and ``score.md``.

``eventlab grade labs/03-idempotent-consumer`` from a shell, or ``grade()`` in
the lab notebook. Introduced with the first graded lab (L03, after lesson 03);
``docs/grading.md`` describes the workflow.
"""

from __future__ import annotations

import contextlib
import hmac
import importlib.util
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import redis

from eventlab import broker as broker_mod
from eventlab import streams, workshop
from eventlab._errors import EventlabError
from eventlab._faultproxy import FaultProxy
from eventlab._show import show
from eventlab.streams import namespace as current_namespace
from eventlab.streams import run_namespace, run_pattern

__all__ = [
    "DEFAULT_TIMEOUT",
    "MEMORY_LIMIT",
    "OUTPUT_LIMIT",
    "PROCESS_LIMIT",
    "Check",
    "CheckContext",
    "CheckResult",
    "GradingError",
    "Score",
    "check",
    "collect",
    "grade",
    "run_namespace",
    "run_pattern",
]

DEFAULT_TIMEOUT = 15.0
"""Seconds a check may run before it is stopped and scores zero."""

OUTPUT_LIMIT = 1_000_000
"""Bytes of stdout + stderr a check may print before it is stopped and scores zero."""

MEMORY_LIMIT = 1536 << 20
"""Bytes of address space the graded process (and each process it starts) may map."""

PROCESS_LIMIT = 64
"""Processes the graded code may run at once; more stops the check (counted, so it binds root)."""

_TOO_MANY_PROCESSES = 75  # the child's exit status after a fork loop (eventlab._grader_child)
_SIGXCPU_STATUS = 128 + signal.SIGXCPU  # the worker ran out of CPU time (RLIMIT_CPU)

_IMPORT_BUDGET = 10.0  # seconds for the child to start (interpreter, redis, eventlab)
_KEPT_OUTPUT = 2_000  # bytes of learner output quoted in a report line
_STOP_BUDGET = 6.0  # seconds the child's supervisor gets to kill every descendant
_CHANNEL_LINE_LIMIT = 65_536  # a longer "report line" is junk written by learner code

F = TypeVar("F", bound=Callable[..., Any])


class GradingError(EventlabError):
    """The lab folder or its checks cannot be graded (not the learner's code failing)."""


@dataclass(frozen=True, slots=True)
class Check:
    """One graded check, as declared by :func:`check` in a ``checks.py``.

    Attributes:
        name: The function name (prefixed by its file for extra checks).
        title: First line of the function's docstring.
        points: Points it is worth.
        hint: What to look at when it fails.
        timeout: Seconds it may run.
        file: The checks file that declares it.
        function: The function name inside that file.
        stretch: A stretch goal: reported, never counted in the score.
    """

    name: str
    title: str
    points: int
    hint: str
    timeout: float
    file: str
    function: str
    stretch: bool = False


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What one check gave.

    Attributes:
        name: The check's name.
        title: What it checks, one line.
        points: Points earned (all or nothing per check).
        max_points: Points it is worth.
        passed: Whether it passed.
        hint: The check's hint (shown when it failed).
        message: Why it failed (empty when it passed).
        seconds: How long it ran.
        stretch: A stretch goal: its points go to :attr:`Score.stretch`, not the score.
    """

    name: str
    title: str
    points: int
    max_points: int
    passed: bool
    hint: str
    message: str
    seconds: float
    stretch: bool = False


@dataclass(frozen=True, slots=True)
class Score:
    """The result of grading one lab.

    Attributes:
        lab: The lab id (its folder name, e.g. ``03-idempotent-consumer``).
        score: Points earned (graded checks only).
        max: Points possible (graded checks only).
        checks: One result per check, in order (stretch checks included, flagged).
        seconds: Wall time of the whole grading run.
        seed: The seed of the fault schedule.
        namespace: The broker namespace the run used (deleted afterwards).
        stretch: Points earned on stretch checks, reported apart from the score.
        stretch_max: Points the stretch checks are worth.
    """

    lab: str
    score: int
    max: int
    checks: list[CheckResult] = field(default_factory=list)
    seconds: float = 0.0
    seed: int = 0
    namespace: str = ""
    stretch: int = 0
    stretch_max: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON shape of ``score.json`` and ``eventlab grade --json``."""
        return asdict(self)

    def table(self) -> str:
        """Return the score as a plain-text table (check, points, passed, hint)."""
        rows = [("check", "points", "passed", "hint / why it failed")]
        graded = [r for r in self.checks if not r.stretch]
        goals = [r for r in self.checks if r.stretch]
        for result in graded + goals:
            note = "" if result.passed else f"{result.hint} [{result.message}]"
            rows.append(
                (
                    f"{result.name} (stretch)" if result.stretch else result.name,
                    f"{result.points}/{result.max_points}",
                    "yes" if result.passed else "NO",
                    note,
                )
            )
        widths = [max(len(row[i]) for row in rows) for i in range(3)]
        lines = [
            "  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:3])) + "  " + row[3]
            for row in rows
        ]
        lines.insert(1, "-" * (sum(widths) + 6 + len(rows[0][3])))
        lines.append(f"score {self.score}/{self.max}  ({self.lab}, {self.seconds:.1f} s)")
        if goals:
            lines.append(f"stretch {self.stretch}/{self.stretch_max}  (not counted in the score)")
        return "\n".join(line.rstrip() for line in lines)

    def markdown(self) -> str:
        """Return the score as a Markdown report (``score.md``)."""
        lines = [
            f"# {self.lab}: {self.score}/{self.max}",
            "",
            "| check | points | passed | hint | why it failed |",
            "|---|---|---|---|---|",
        ]
        for result in self.checks:
            why = result.message.replace("|", "\\|").replace("\n", " ")
            hint = "" if result.passed else result.hint.replace("|", "\\|")
            name = f"{result.name} (stretch)" if result.stretch else result.name
            lines.append(
                f"| {name} | {result.points}/{result.max_points} | "
                f"{'yes' if result.passed else 'no'} | {hint} | {why} |"
            )
        if self.stretch_max:
            lines += ["", f"Stretch goals: {self.stretch}/{self.stretch_max} (not in the score)."]
        lines += ["", f"Graded in {self.seconds:.1f} s with seed {self.seed}."]
        return "\n".join(lines) + "\n"

    def _repr_markdown_(self) -> str:
        return self.markdown()


class CheckContext:
    """What a check function receives: the learner's module, a client, names, a seeded RNG.

    Attributes:
        lab: The lab folder.
        url: The broker URL.
        namespace: This check's own namespace (already in ``EVENTLAB_NAMESPACE``).
        seed: The seed of the lab's fault schedule.
        timeout: Seconds this check may run.
    """

    def __init__(self, *, lab: Path, url: str, namespace: str, seed: int, timeout: float) -> None:
        """Build the context; the grader does this for every check."""
        import random  # noqa: PLC0415 - only checks need it

        self.lab = lab
        self.url = url
        self.namespace = namespace
        self.seed = seed
        self.timeout = timeout
        self.rng = random.Random(seed)  # noqa: S311 - a repeatable fault schedule, not secrets
        self._exercise: Any = None
        self._clients: list[redis.Redis] = []

    @property
    def exercise(self) -> Any:
        """The learner's ``exercise.py``, imported fresh for this check."""
        if self._exercise is None:
            # Named as a normal `import exercise` names it: nothing tells a graded run.
            self._exercise = _import_file(self.lab / "exercise.py", "exercise")
        return self._exercise

    def client(self, **options: Any) -> redis.Redis:
        """Return a new client (``decode_responses=True``), closed after the check."""
        options.setdefault("decode_responses", True)
        made = broker_mod.client_for_url(self.url, **options)
        self._clients.append(made)
        return made

    def key(self, name: str) -> str:
        """Return a stream key in this check's namespace: ``{<ns>:name}``."""
        return streams.stream_key(name, namespace_=self.namespace)

    def close(self) -> None:
        """Close every client the check opened."""
        for made in self._clients:
            with contextlib.suppress(Exception):
                made.close()


def check(
    *, points: int, hint: str, timeout: float = DEFAULT_TIMEOUT, stretch: bool = False
) -> Callable[[F], F]:
    """Declare a graded check in a lab's ``checks.py``.

    The function takes a :class:`CheckContext` and passes when it returns;
    an ``AssertionError``'s message (or any other exception) is the report line.

    Args:
        points: Points it is worth when it passes.
        hint: What the learner should look at when it fails.
        timeout: Seconds it may run before it is stopped (and scores zero).
        stretch: A stretch goal (a throughput target, a bounded store…): shown
            in the report and in ``score.json`` as ``stretch``/``stretch_max``,
            never counted in ``score``/``max``.
    """
    if points <= 0:
        raise ValueError("points must be positive")

    def mark(function: F) -> F:
        function.__eventlab_check__ = {  # type: ignore[attr-defined]
            "points": points,
            "hint": hint,
            "timeout": float(timeout),
            "stretch": bool(stretch),
        }
        return function

    return mark


def _import_file(path: Path, name: str) -> Any:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def collect(files: Sequence[Path], *, prefix_first: bool = False) -> list[Check]:
    """Return the checks declared in ``files``, in file then definition order.

    Checks of the first file keep their function name; checks of further files
    (an instructor's ``--checks DIR``) are named ``<file stem>.<function>``.

    Raises:
        GradingError: A file has no checks or cannot be imported.
    """
    found: list[Check] = []
    for index, path in enumerate(files):
        try:
            module = _import_file(path, f"_eventlab_checks_{index}_{secrets.token_hex(4)}")
        except Exception as exc:
            raise GradingError(
                f"{path} cannot be imported: {type(exc).__name__}: {exc}",
                fix="fix the checks file (it is instructor code, not the learner's)",
            ) from exc
        declared = [
            (name, value)
            for name, value in vars(module).items()
            if callable(value) and hasattr(value, "__eventlab_check__")
        ]
        if not declared:
            raise GradingError(
                f"{path} declares no checks", fix="decorate check functions with @check(...)"
            )
        for name, function in declared:
            meta = function.__eventlab_check__
            doc = (function.__doc__ or name).strip().splitlines()[0]
            label = name if index == 0 and not prefix_first else f"{path.stem}.{name}"
            found.append(
                Check(
                    name=label,
                    title=doc,
                    points=int(meta["points"]),
                    hint=str(meta["hint"]),
                    timeout=float(meta["timeout"]),
                    file=str(path),
                    function=name,
                    stretch=bool(meta.get("stretch", False)),
                )
            )
    return found


def _lab_seed(path: Path) -> int:
    """Read ``SEED = <int>`` from a checks file without importing it twice."""
    for line in path.read_text().splitlines():
        if line.startswith("SEED") and "=" in line:
            with contextlib.suppress(ValueError):
                return int(line.split("=", 1)[1].split("#")[0].strip())
    return 0


class _Output:
    """Drain a child's stdout+stderr, keep the head, count every byte."""

    def __init__(self, stream: Any) -> None:
        self.head = bytearray()
        self.total = 0
        self._stream = stream
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while True:
            chunk = self._stream.read1(65536) if hasattr(self._stream, "read1") else b""
            if not chunk:
                return
            self.total += len(chunk)
            if len(self.head) < _KEPT_OUTPUT:
                self.head.extend(chunk[: _KEPT_OUTPUT - len(self.head)])

    def join(self) -> None:
        self._thread.join(timeout=2.0)

    def first_line(self) -> str:
        text = self.head.decode(errors="replace").strip().splitlines()
        return text[0][:200] if text else ""


def _delete_keys(client: redis.Redis, prefix: str) -> int:
    deleted = 0
    batch: list[str] = []
    keys = (
        k
        for glob in (f"{prefix}*", f"{{{prefix}*")
        for k in client.scan_iter(match=glob, count=1000)
    )
    for key in keys:
        batch.append(key)
        if len(batch) >= 500:  # noqa: PLR2004 - one round trip per 500 keys
            deleted += int(client.unlink(*batch))
            batch.clear()
    if batch:
        deleted += int(client.unlink(*batch))
    return deleted


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop the child: its supervisor kills every descendant; SIGKILL the group as a last resort.

    SIGTERM asks the supervisor (a subreaper) to SIGKILL and reap everything
    the learner's code started, even processes that left the process group
    (``setsid``, double forks). If it does not exit in time (or the learner
    killed it), the whole process group is SIGKILLed.
    """
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + _STOP_BUDGET
    while time.monotonic() < deadline and not _exited(proc):
        time.sleep(0.005)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # not reaped yet, so the id is still ours
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5.0)


def _exited(proc: subprocess.Popen[bytes]) -> bool:
    """Whether the child exited, without reaping it (its pid stays reserved)."""
    return _exit_status(proc) is not None


def _exit_status(proc: subprocess.Popen[bytes]) -> int | None:
    """The child's exit status (negative: killed by that signal), without reaping it."""
    if proc.returncode is not None:
        return proc.returncode
    try:
        info = os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOWAIT | os.WNOHANG)
    except ChildProcessError:
        return proc.poll()
    if info is None:
        return None
    return int(info.si_status) if info.si_code == os.CLD_EXITED else -int(info.si_status)


class _Channel:
    """Read the worker's report lines from a pipe; keep only authentic ones, in order.

    Each line is ``<hmac> <seq> <json>`` with an HMAC-SHA256 under a token only
    the grader and the worker know; lines with a wrong HMAC or sequence number
    (forged by learner code, or torn by its writes) are counted and dropped.
    """

    def __init__(
        self,
        fd: int,
        token: bytes,
        on_control: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.records: list[dict[str, Any]] = []
        self.forged = 0
        self._fd, self._token, self._next = fd, token, 0
        self._on_control = on_control
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        pending = b""
        while True:
            try:
                chunk = os.read(self._fd, 65536)
            except OSError:
                chunk = b""
            if not chunk:
                break
            pending += chunk
            *lines, pending = pending.split(b"\n")
            for line in lines:
                self._take(line)
            if len(pending) > _CHANNEL_LINE_LIMIT:
                pending, self.forged = b"", self.forged + 1
        with contextlib.suppress(OSError):
            os.close(self._fd)

    def _take(self, line: bytes) -> None:
        try:
            mac, number, body = line.decode().split(" ", 2)
            expected = hmac.new(self._token, f"{number} {body}".encode(), "sha256").hexdigest()
            authentic = hmac.compare_digest(mac, expected) and number == str(self._next)
            record = json.loads(body) if authentic else None
        except ValueError:
            record = None
        if not isinstance(record, dict):
            self.forged += 1
            return
        self._next += 1
        if record.get("event") == "control":
            if self._on_control is not None:
                self._on_control(record)  # answered at once: the check waits for it
            return
        self.records.append(record)

    def finish(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for the end of the pipe."""
        self._thread.join(timeout)


def _run_checks(
    lab: Path,
    checks: list[Check],
    *,
    url: str,
    prefix: str,
    seed: int,
    timeout: float | None,
) -> list[CheckResult]:
    """Run ``checks`` in child processes; restart the child after a check it could not finish."""
    results: dict[int, CheckResult] = {}
    limits = [timeout if timeout is not None else c.timeout for c in checks]
    files = list(dict.fromkeys(c.file for c in checks))
    plan = {
        "lab": str(lab),
        "seed": seed,
        "checks": [
            {"module": files.index(c.file), "function": c.function, "timeout": limit}
            for c, limit in zip(checks, limits, strict=True)
        ],
    }
    # The checks travel as source text, sent only after exercise.py was imported:
    # no plan file, and no path to an instructor's hidden checks, ever exists.
    sources = [Path(file).read_text() for file in files]
    # Every connection of the graded process goes through the fault proxy: the
    # crashes a check schedules land below the learner's code, on any connection.
    proxy = FaultProxy(url) if FaultProxy.supports(url) else None
    try:
        start = 0
        while start < len(checks):
            child = _Child(lab, checks, limits, results, url=url, prefix=prefix, proxy=proxy)
            start = child.run(plan, sources, start)
    finally:
        if proxy is not None:
            proxy.close()
    return [results[i] for i in range(len(checks))]


class _Child:
    """One grader child: runs checks from an index on until one cannot finish."""

    def __init__(
        self,
        lab: Path,
        checks: list[Check],
        limits: list[float],
        results: dict[int, CheckResult],
        *,
        url: str,
        prefix: str,
        proxy: FaultProxy | None = None,
    ) -> None:
        self.lab, self.checks, self.limits, self.results = lab, checks, limits, results
        self.url, self.prefix, self.proxy = url, prefix, proxy
        self._stdin_lock = threading.Lock()
        self.imported = False
        self.seen = 0
        self.current = 0
        self.started_at = time.monotonic()
        self.deadline = self.started_at
        self._sources = b""
        self._proc: subprocess.Popen[bytes] | None = None

    def run(self, plan: dict[str, Any], sources: list[str], start: int) -> int:
        """Run checks from ``start`` on; return the index to continue from."""
        env = dict(os.environ)
        # Nothing here that a normal run lacks (no grader-only variable): the
        # child turns off bytecode writing and buffering itself.
        env.update(
            {
                "REDIS_URL": self.proxy.url if self.proxy is not None else self.url,
                "EVENTLAB_NAMESPACE": f"{self.prefix}-boot",
            }
        )
        token = secrets.token_bytes(32)
        first = {**plan, "start": start, "prefix": self.prefix, "token": token.hex()}
        self._sources = json.dumps(sources).encode() + b"\n"
        read_fd, write_fd = os.pipe()
        try:
            proc = subprocess.Popen(  # noqa: S603 - our own child module, same interpreter
                [sys.executable, "-m", "eventlab._grader_child", str(write_fd)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.lab,
                pass_fds=(write_fd,),
                start_new_session=True,  # one process group: the last-resort kill
            )
        finally:
            os.close(write_fd)
        self._proc = proc
        channel = _Channel(read_fd, token, self._control)
        output = _Output(proc.stdout)
        self._send(json.dumps(first).encode() + b"\n")
        self.current = start
        self.started_at = time.monotonic()
        self.deadline = self.started_at + _IMPORT_BUDGET + self.limits[start]
        try:
            while True:
                done = self._read(channel)
                if done is not None:
                    return done
                stop = self._stop_reason(proc, output, channel)
                if stop is not None:
                    return stop
                time.sleep(0.01)
        finally:
            _stop(proc)
            channel.finish(2.0)
            output.join()
            with contextlib.suppress(OSError):
                if proc.stdin is not None:
                    proc.stdin.close()

    def _send(self, data: bytes) -> None:
        """Write instructions to the worker's stdin (it may be dead already)."""
        stdin = self._proc.stdin if self._proc is not None else None
        if stdin is None:
            return
        with self._stdin_lock, contextlib.suppress(OSError, ValueError):
            stdin.write(data)
            stdin.flush()

    def _control(self, record: dict[str, Any]) -> None:
        """Answer a check's request to the fault proxy (doom a process, read its count)."""
        reply: dict[str, Any] = {"ok": False}
        if self.proxy is not None:
            with contextlib.suppress(KeyError, TypeError, ValueError):
                pid = int(record["pid"])
                if record.get("op") == "doom":
                    self.proxy.doom(
                        pid,
                        before=int(record["before"]),
                        only=record.get("only"),
                        ignore_scripts=record.get("ignore_scripts") or (),
                    )
                    reply = {"ok": True}
                elif record.get("op") == "counted":
                    reply = {"ok": True, "counted": self.proxy.counted(pid)}
                elif record.get("op") == "trips":
                    reply = {"ok": True, "trips": self.proxy.trips(pid)}
        self._send(json.dumps(reply).encode() + b"\n")

    def _read(self, channel: _Channel) -> int | None:
        """Take in new reports; return where to continue when this child is done."""
        while self.seen < len(channel.records):
            record = channel.records[self.seen]
            self.seen += 1
            index = int(record["index"])
            if record["event"] == "start":
                self.current = index
                self.started_at = time.monotonic()
                self.deadline = self.started_at + self.limits[index]
            elif record["event"] == "imported":
                if not self.imported and self._sources:
                    self._send(self._sources)  # the checks, only after the learner's import
                    self._sources = b""
                self.imported = True
            elif record["event"] == "import-error":
                for later in range(index, len(self.checks)):
                    self.results[later] = _result(self.checks[later], record)
                return len(self.checks)
            else:
                self.results[index] = _result(self.checks[index], record)
                self.current = index + 1
        return len(self.checks) if self.current >= len(self.checks) else None

    def _stop_reason(
        self, proc: subprocess.Popen[bytes], output: _Output, channel: _Channel
    ) -> int | None:
        """Fail the current check if the child flooded, died or overran; return where to go on."""
        elapsed = time.monotonic() - self.started_at
        if output.total > OUTPUT_LIMIT:
            why = (
                f"stopped: printed more than {OUTPUT_LIMIT // 1000} kB of output "
                f"(remove print calls in loops) — it began: {output.first_line()!r}"
            )
        elif (status := _exit_status(proc)) is not None:
            channel.finish(2.0)  # reports sent just before it exited: read them first
            if len(channel.records) > self.seen:
                return None
            why = _death(status, self.limits[self.current], output.first_line())
        elif time.monotonic() > self.deadline:
            limit = self.limits[self.current]
            if not self.imported:
                why = (
                    f"exercise.py did not finish importing within {limit:.0f} s "
                    "(code at module level that never ends?)"
                )
                for later in range(self.current, len(self.checks)):
                    self.results[later] = _failed(self.checks[later], why, elapsed)
                return len(self.checks)
            why = (
                f"timed out after {limit:.0f} s (an endless loop, or waiting for "
                "something that never comes?)"
            )
        else:
            return None
        self.results[self.current] = _failed(self.checks[self.current], why, elapsed)
        return self.current + 1


def _death(status: int, limit: float, output: str) -> str:
    """One line saying why the graded process died, from its exit status."""
    if status == _TOO_MANY_PROCESSES:
        return (
            f"stopped: started more than {PROCESS_LIMIT} processes at once (a fork loop?) — "
            "every one was killed"
        )
    if status in {_SIGXCPU_STATUS, -signal.SIGXCPU}:
        return f"stopped: used more than {limit:.0f} s of CPU time (a busy loop?)"
    return (
        f"the grading process died (exit status {status}) — does "
        f"exercise.py call sys.exit or os._exit? its output began: {output!r}"
    )


def _result(spec: Check, record: dict[str, Any]) -> CheckResult:
    passed = record["event"] == "passed"
    return CheckResult(
        name=spec.name,
        title=spec.title,
        points=spec.points if passed else 0,
        max_points=spec.points,
        passed=passed,
        hint=spec.hint,
        message="" if passed else str(record.get("message", "failed")),
        seconds=round(float(record.get("seconds", 0.0)), 3),
        stretch=spec.stretch,
    )


def _failed(spec: Check, message: str, seconds: float) -> CheckResult:
    return CheckResult(
        name=spec.name,
        title=spec.title,
        points=0,
        max_points=spec.points,
        passed=False,
        hint=spec.hint,
        message=message,
        seconds=round(seconds, 3),
        stretch=spec.stretch,
    )


def _check_files(lab: Path, extra: str | os.PathLike[str] | None) -> list[Path]:
    files = [lab / "checks.py"]
    if not files[0].is_file():
        raise GradingError(
            f"{lab} has no checks.py",
            fix="point at a lab folder such as labs/03-idempotent-consumer",
        )
    if not (lab / "exercise.py").is_file():
        raise GradingError(f"{lab} has no exercise.py", fix="point at a lab folder")
    if extra is not None:
        folder = Path(extra).resolve()
        if folder.is_file():
            files.append(folder)
        else:
            more = sorted(folder.glob("*.py"))
            if not more:
                raise GradingError(
                    f"--checks {folder}: no .py files", fix="point at a folder of checks files"
                )
            files.extend(more)
    return files


def grade(
    lab: str | os.PathLike[str] | None = None,
    *,
    checks: str | os.PathLike[str] | None = None,
    url: str | None = None,
    seed: int | None = None,
    timeout: float | None = None,
    out: str | os.PathLike[str] | None = None,
    quiet: bool = False,
    record: bool = True,
) -> Score:
    """Grade the lab in folder ``lab`` (default: the working directory) and report.

    Args:
        lab: A lab folder holding ``exercise.py`` and ``checks.py``
            (``labs/NN-topic`` or ``solutions/NN-topic``).
        checks: An instructor's extra checks: a folder of ``*.py`` files (or one
            file) with :func:`check` functions, run the same way.
        url: The broker; default ``REDIS_URL`` or the managed broker that is up. When
            none is up, a managed broker is started for this call and stopped after it.
        seed: The fault schedule's seed; default the lab's ``SEED``.
        timeout: Seconds per check, overriding each check's own.
        out: Folder for ``score.json`` and ``score.md``; default ``lab``.
        quiet: Do not print the table.
        record: Publish the score to the workshop stream when ``EVENTLAB_NAMESPACE``
            is set (:func:`eventlab.workshop.record_score`).

    Returns:
        The :class:`Score`.
    """
    began = time.monotonic()
    folder = Path(lab).resolve() if lab is not None else Path.cwd()
    files = _check_files(folder, checks)
    declared = collect(files)
    # A namespace other than the solo default means a workshop learner (set by
    # EVENTLAB_NAMESPACE or `eventlab workshop join`): grade under their prefix
    # and publish the score for the instructor.
    learner: str | None = current_namespace()
    if learner == "lab":
        learner = None
    base = learner or "lab"  # the solo namespace: the run prefix names no grader
    prefix = run_namespace(base)
    run_seed = _lab_seed(files[0]) if seed is None else seed
    # A broker this call starts, it also stops; one already up (the learner's
    # lesson broker, REDIS_URL) is left running.
    started: broker_mod.Broker | None = None
    if url is None:
        running = broker_mod.current()
        if running is None:
            started = broker_mod.up()
        target = (running or started).url  # type: ignore[union-attr]
    else:
        target = url
    try:
        return _grade_on(
            target, folder, declared, learner=learner, prefix=prefix, seed=run_seed,
            timeout=timeout, out=out, quiet=quiet, record=record, began=began,
        )  # fmt: skip
    finally:
        if started is not None and started.managed:
            broker_mod.down(state=started.state)


def _grade_on(
    target: str,
    folder: Path,
    declared: list[Check],
    *,
    learner: str | None,
    prefix: str,
    seed: int,
    timeout: float | None,
    out: str | os.PathLike[str] | None,
    quiet: bool,
    record: bool,
    began: float,
) -> Score:
    """Grade on the broker at ``target``: run the checks, write and print the report."""
    run_seed = seed
    client = broker_mod.client_for_url(target, decode_responses=True)
    try:
        client.ping()
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        client.close()
        raise GradingError(
            f"cannot reach the broker at {broker_mod.redact(target)}: {exc}",
            fix="start it with `eventlab up` (or fix REDIS_URL), then grade again",
        ) from None
    try:
        try:
            results = _run_checks(
                folder, declared, url=target, prefix=prefix, seed=run_seed, timeout=timeout
            )
        finally:
            _delete_keys(client, prefix + "-")
        graded = [r for r in results if not r.stretch]
        goals = [r for r in results if r.stretch]
        score = Score(
            lab=folder.name,
            score=sum(r.points for r in graded),
            max=sum(r.max_points for r in graded),
            checks=results,
            seconds=round(time.monotonic() - began, 2),
            seed=run_seed,
            namespace=prefix,
            stretch=sum(r.points for r in goals),
            stretch_max=sum(r.max_points for r in goals),
        )
        destination = Path(out) if out is not None else folder
        destination.mkdir(parents=True, exist_ok=True)
        (destination / "score.json").write_text(json.dumps(score.to_dict(), indent=2) + "\n")
        (destination / "score.md").write_text(score.markdown())
        if learner and record:
            _record(client, learner=learner, score=score)
    finally:
        client.close()
    if not quiet:
        show(score.table())  # the grader's report is its output
    return score


def _record(client: redis.Redis, *, learner: str, score: Score) -> None:
    """Publish the score for the workshop instructor (:func:`eventlab.workshop.record_score`)."""
    workshop.record_score(
        client,
        learner=learner,
        lab=score.lab,
        score=score.score,
        max_score=score.max,
        failed=[check.name for check in score.checks if not check.passed and not check.stretch],
    )
