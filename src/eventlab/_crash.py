"""Die on the Nth command: a crash that lands between two steps of a commit, every time.

A consumer SIGKILLed from outside dies wherever it happens to be — usually in a
handler — so a commit split into two calls (``XACK``, then the effect) passes
such crash tests by luck. :func:`die_after_commands` makes the process kill
itself (``SIGKILL``) right after the server has answered its Nth *counted*
command, before it sends anything else: step N has taken effect, step N+1 never
happens. Swept over N = 1, 2, … until a run finishes without reaching N, the
kill lands once after every step of every commit. A commit that is one command
(one Lua call, one ``MULTI``/``EXEC``) is never cut in two; a commit of two
commands always is.

Counted: every command a redis-py client (sync or asyncio) in this process
sends, except

* the reads and bookkeeping in :data:`BACKGROUND` (``XREADGROUP``, ``XINFO``,
  ``XPENDING``, ``XGROUP``, ``SCRIPT``…), which a consumer sends on a clock,
  not as part of a commit;
* calls of the scripts in ``ignore_scripts`` (by default the consumer runtime's
  reclaim script, which runs every ``reclaim_every`` seconds);
* a reply of ``NOSCRIPT`` (nothing ran; the client loads the script and sends
  the command again, which counts) and commands that got no reply.

A pipeline counts as one command: it goes out in one write, so a client that
dies cannot stop it halfway (the kill lands after its last reply).

Used by the crash tests (``tests/test_crash.py``) through
``tests._consumer_demo:counter`` and by lesson 03, whose "killed between
effect and XACK" cells run ``eventlab.demos:reliable`` with ``die_after``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import signal
import threading
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import Any

import redis
import redis.asyncio
from redis.exceptions import NoScriptError, ResponseError

from eventlab import _lua

__all__ = ["BACKGROUND", "Commands", "die_after_commands"]

BACKGROUND = frozenset(
    {
        "AUTH",
        "CLIENT",
        "CLUSTER",
        "COMMAND",
        "HELLO",
        "INFO",
        "PING",
        "SCRIPT",
        "SELECT",
        "XGROUP",
        "XINFO",
        "XLEN",
        "XPENDING",
        "XRANGE",
        "XREADGROUP",
        "XREVRANGE",
    }
)
"""Commands that are not counted: a consumer's reads and set-up, sent on a clock.

``CLUSTER`` and ``COMMAND`` are a cluster client's own questions (the slot map,
the keys of a command), asked before the commands it was given.
"""

_SCRIPT_CALLS = frozenset({"EVALSHA", "EVALSHA_RO", "EVAL", "EVAL_RO"})


def _sha(script: str) -> str:
    return hashlib.sha1(script.encode(), usedforsecurity=False).hexdigest()


def _sigkill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


@dataclass(slots=True)
class Commands:
    """What :func:`die_after_commands` has counted so far in this process.

    Attributes:
        die_after: The count at which the process dies (0: never, just count).
        counted: The names of the counted commands, in the order they were answered.
    """

    die_after: int
    counted: list[str] = field(default_factory=list)
    _ignore: frozenset[str] = frozenset()
    _ignore_shas: frozenset[str] = frozenset()
    _kill: Callable[[], None] = _sigkill
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _counts(self, args: tuple[Any, ...]) -> bool:
        if not args:
            return False
        name = _command_name(args)
        if name in self._ignore:
            return False
        if name in _SCRIPT_CALLS and len(args) > 1:
            body = str(args[1])
            sha = body.lower() if name.startswith("EVALSHA") else _sha(body)
            return sha not in self._ignore_shas
        return True

    def _note(self, args: tuple[Any, ...]) -> None:
        """Count a command the server answered; die if it is the Nth."""
        if not self._counts(args):
            return
        with self._lock:
            self.counted.append(_command_name(args))
            due = len(self.counted) == self.die_after
        if due:
            self._kill()

    def _stacked(self, pipe: Any) -> tuple[Any, ...]:
        """A pipeline is one step, named PIPELINE, if any command queued in it counts."""
        stack = getattr(pipe, "command_stack", [])
        return ("PIPELINE",) if any(self._counts(tuple(a)) for a, _ in stack) else ()


def _command_name(args: tuple[Any, ...]) -> str:
    return str(args[0]).split(" ", 1)[0].upper() if args else "?"


def _counted_call(original: Any, state: Commands) -> Any:
    @functools.wraps(original)
    def execute_command(self: Any, *args: Any, **options: Any) -> Any:
        try:
            result = original(self, *args, **options)
        except NoScriptError:
            raise  # nothing ran
        except ResponseError:
            state._note(args)  # noqa: SLF001 - it ran and failed (WRONGTYPE…): a step all the same
            raise
        state._note(args)  # noqa: SLF001
        return result

    return execute_command


def _counted_acall(original: Any, state: Commands) -> Any:
    @functools.wraps(original)
    async def execute_command(self: Any, *args: Any, **options: Any) -> Any:
        try:
            result = await original(self, *args, **options)
        except NoScriptError:
            raise
        except ResponseError:
            state._note(args)  # noqa: SLF001
            raise
        state._note(args)  # noqa: SLF001
        return result

    return execute_command


def _counted_pipe(original: Any, state: Commands) -> Any:
    @functools.wraps(original)
    def execute(self: Any, *args: Any, **options: Any) -> Any:
        step = state._stacked(self)  # noqa: SLF001
        result = original(self, *args, **options)
        state._note(step)  # noqa: SLF001
        return result

    return execute


def _counted_apipe(original: Any, state: Commands) -> Any:
    @functools.wraps(original)
    async def execute(self: Any, *args: Any, **options: Any) -> Any:
        step = state._stacked(self)  # noqa: SLF001
        result = await original(self, *args, **options)
        state._note(step)  # noqa: SLF001
        return result

    return execute


@contextlib.contextmanager
def die_after_commands(
    n: int,
    *,
    ignore: Collection[str] = BACKGROUND,
    ignore_scripts: Collection[str] = (_lua.RECLAIM,),
    kill: Callable[[], None] = _sigkill,
) -> Iterator[Commands]:
    """SIGKILL this process right after the server answers its ``n``-th counted command.

    Meant for a child process that runs a consumer (a crash test, a lesson's
    demo); it patches every redis-py client class in the process while the
    block runs. The module docstring says what counts.

    Args:
        n: Die after this many counted commands were answered; ``0`` never dies
            (a dry run: read :attr:`Commands.counted` to see what a sweep must cover).
        ignore: Command names not counted (default :data:`BACKGROUND`).
        ignore_scripts: Lua script texts whose calls are not counted (default:
            the consumer runtime's reclaim script).
        kill: What "die" means (default ``SIGKILL`` to itself; tests of the
            counting pass a function that raises).

    Yields:
        The running count.
    """
    if n < 0:
        raise ValueError(f"n={n} must be >= 0 (0: never die)")
    state = Commands(
        die_after=n,
        _ignore=frozenset(name.upper() for name in ignore),
        _ignore_shas=frozenset(_sha(script) for script in ignore_scripts),
        _kill=kill,
    )
    sync_call = redis.Redis.execute_command
    async_call = redis.asyncio.Redis.execute_command
    sync_pipe = redis.client.Pipeline.execute
    async_pipe = redis.asyncio.client.Pipeline.execute

    patches: list[tuple[Any, str, Any, Any]] = [
        (redis.Redis, "execute_command", sync_call, _counted_call(sync_call, state)),
        (redis.asyncio.Redis, "execute_command", async_call, _counted_acall(async_call, state)),
        (redis.client.Pipeline, "execute", sync_pipe, _counted_pipe(sync_pipe, state)),
        (redis.asyncio.client.Pipeline, "execute", async_pipe, _counted_apipe(async_pipe, state)),
    ]
    for owner, name, _, patched in patches:
        setattr(owner, name, patched)
    try:
        yield state
    finally:
        for owner, name, original, _ in patches:
            setattr(owner, name, original)
