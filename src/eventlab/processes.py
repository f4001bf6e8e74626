"""Run a Python function as its own OS process, so crash demos kill something real.

``spawn("eventlab.shop.billing:main", args=["--group", "billing"])`` starts a
fresh interpreter that imports the module and calls the function (awaiting it
if it is a coroutine function). The child can call :func:`signal_ready` once it
is subscribed; the parent waits for that with :meth:`Proc.wait_ready`. By
default a child dies with its parent (Linux ``PR_SET_PDEATHSIG``), so a killed
notebook kernel or test run leaves no consumer behind.

Introduced in lesson 03 (a consumer killed before it acks).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import importlib
import inspect
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path

from eventlab import _env
from eventlab._errors import EventlabError

__all__ = ["Proc", "ProcessError", "signal_ready", "spawn"]

_READY_ENV = _env.READY_FILE


class ProcessError(EventlabError):
    """A spawned process failed to start or to become ready."""


class Proc:
    """A handle on a spawned process.

    Attributes:
        name: A label for messages and the log file name.
        target: The ``module:function`` it runs.
        log_path: Where its stdout and stderr go.
    """

    def __init__(
        self, popen: subprocess.Popen[bytes], *, name: str, target: str, log_path: Path, ready: Path
    ) -> None:
        """Wrap a started child; use :func:`spawn` instead."""
        self._popen = popen
        self.name = name
        self.target = target
        self.log_path = log_path
        self._ready = ready

    def __repr__(self) -> str:
        """Show name, pid and whether it runs."""
        state = "alive" if self.alive else f"exited {self._popen.returncode}"
        return f"<Proc {self.name} pid={self.pid} {state}>"

    @property
    def pid(self) -> int:
        """The child's process id."""
        return self._popen.pid

    @property
    def alive(self) -> bool:
        """Whether the child still runs."""
        return self._popen.poll() is None

    @property
    def returncode(self) -> int | None:
        """The exit status, or ``None`` while it runs (``-9`` after :meth:`kill`)."""
        return self._popen.poll()

    def wait_ready(self, *, timeout: float = 10.0) -> None:
        """Block until the child called :func:`signal_ready` (``timeout`` in seconds).

        Raises:
            ProcessError: The child exited or did not become ready in time;
                the message ends with the last line of its log.
        """
        deadline = time.monotonic() + timeout
        while not self._ready.exists():
            if not self.alive:
                raise ProcessError(
                    f"{self.name} exited with status {self.returncode} before it was ready: "
                    f"{self._last_log_line()}",
                    fix=f"read {self.log_path}",
                )
            if time.monotonic() > deadline:
                raise ProcessError(
                    f"{self.name} was not ready within {timeout:.1f} s",
                    fix=f"read {self.log_path}",
                )
            time.sleep(0.005)

    def kill(self) -> None:
        """SIGKILL the child (a crash: no cleanup, no ack) and reap it."""
        with contextlib.suppress(ProcessLookupError):
            self._popen.send_signal(signal.SIGKILL)
        self._popen.wait()

    def terminate(self, *, timeout: float = 5.0) -> int:
        """SIGTERM (a graceful stop), then SIGKILL after ``timeout`` seconds; return the status."""
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self._popen.send_signal(signal.SIGTERM)
            try:
                self._popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        return int(self._popen.wait())

    def wait(self, *, timeout: float | None = None) -> int:
        """Wait for the child to exit (``timeout`` in seconds); return its status."""
        return int(self._popen.wait(timeout=timeout))

    def log(self) -> str:
        """Return everything the child printed so far."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def _last_log_line(self) -> str:
        lines = self.log().strip().splitlines()
        return lines[-1] if lines else "no output"


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL this child when its parent dies (no orphans)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)


def spawn(
    target: str,
    *,
    args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    name: str | None = None,
    die_with_parent: bool = True,
) -> Proc:
    """Start ``module:function(*args)`` in a new Python process.

    Args:
        target: ``"package.module:function"``; the function may be ``async``.
        args: Strings passed as positional arguments.
        env: Extra environment variables (added to this process's environment).
        name: A label (default: the function name).
        die_with_parent: Kill the child when this process dies (Linux only).

    Returns:
        A :class:`Proc`; call :meth:`Proc.wait_ready` if the child signals readiness.
    """
    module, sep, func = target.partition(":")
    if not sep or not module or not func:
        raise ValueError(f"target {target!r} must look like 'package.module:function'")
    label = name or func
    folder = Path(tempfile.gettempdir()) / "eventlab-procs"
    folder.mkdir(parents=True, exist_ok=True)
    token = uuid.uuid4().hex[:8]
    log_path = folder / f"{label}-{token}.log"
    ready = folder / f"{label}-{token}.ready"
    argv, secret = _hide_urls(args)
    child_env = {
        **os.environ,
        **(env or {}),
        **secret,
        _READY_ENV: str(ready),
        "PYTHONUNBUFFERED": "1",
    }
    with log_path.open("wb") as log:
        popen = subprocess.Popen(  # noqa: S603 - runs this interpreter on our own module
            [sys.executable, "-m", "eventlab.processes", target, *argv],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=child_env,
            preexec_fn=_die_with_parent if die_with_parent else None,  # noqa: PLW1509 - only prctl
        )
    return Proc(popen, name=label, target=target, log_path=log_path, ready=ready)


_URL_ARG = re.compile(r"^(redis|rediss|unix)://", re.IGNORECASE)
_ENV_ARG = "env:"


def _hide_urls(args: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Move broker URLs out of the command line into the child's environment.

    Any user can read every process's command line (``ps``, ``/proc/PID/cmdline``);
    only the owner can read its environment. A URL argument (it may carry a
    password) becomes ``env:EVENTLAB_ARG_N`` on the command line and the child's
    :func:`_main` puts the value back before calling the function.
    """
    argv: list[str] = []
    secret: dict[str, str] = {}
    for index, arg in enumerate(args):
        if _URL_ARG.match(arg):
            name = f"EVENTLAB_ARG_{index}"
            secret[name] = arg
            argv.append(_ENV_ARG + name)
        else:
            argv.append(arg)
    return argv, secret


def _reveal(arg: str) -> str:
    if arg.startswith(_ENV_ARG + "EVENTLAB_ARG_"):
        return os.environ.pop(arg[len(_ENV_ARG) :], "")
    return arg


def signal_ready() -> None:
    """Tell the parent (waiting in :meth:`Proc.wait_ready`) that this child is ready."""
    path = _env.get(_env.READY_FILE)
    if path:
        Path(path).touch()


def _main(argv: Sequence[str]) -> int:
    if not argv:
        sys.stderr.write("usage: python -m eventlab.processes module:function [args...]\n")
        return 2
    module, _, func = argv[0].partition(":")
    function = getattr(importlib.import_module(module), func)
    result = function(*(_reveal(arg) for arg in argv[1:]))
    if inspect.isawaitable(result):
        result = asyncio.run(_await(result))
    return int(result) if isinstance(result, int) else 0


async def _await(awaitable: object) -> object:
    return await awaitable  # type: ignore[misc]


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
