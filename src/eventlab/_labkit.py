"""Helpers for lab checks: seeded workloads, forked workers that really die, bounded loops.

Used by ``solutions/*/checks.py`` (see :mod:`eventlab.grading`). Everything is
bounded in rounds or seconds, so learner code that never acks or never returns
makes a check fail, not hang (the grader's per-check timeout is the last line).

Crashes: :func:`fork` with ``die_before=n`` runs a function in a forked process
that the grader's fault proxy (:mod:`eventlab._faultproxy`) SIGKILLs when its
``n``-th counted command arrives, whatever connection or client sent it;
:func:`sweep` does that for n = 1, 2, … in turn, so a crash lands in every gap
between two commands of the learner's code. Nothing in the doomed process
differs from a normal run. Outside the grader (no proxy), the doomed process
counts its own redis-py commands instead (:mod:`eventlab._crash`).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable, Collection, Iterable
from typing import Any

import redis
from redis.connection import Connection

from eventlab import _crash, _lua, broker
from eventlab._poll import poll as wait_until
from eventlab.envelope import Event

__all__ = [
    "ACKS",
    "Worker",
    "crash_between",
    "crashing_client",
    "entries_in",
    "fork",
    "out_of_order",
    "pending_count",
    "publish_all",
    "read_entries",
    "read_new",
    "reclaim_all",
    "sweep",
    "wait_until",
]

ACKS = ("XACK", "EVALSHA", "EVAL", "FCALL", "EXEC")
"""Commands that may carry an acknowledgement: ``fork(..., only=ACKS)`` counts just these."""

_CONTROL: Callable[..., dict[str, Any]] | None = None
"""Set by the grader's worker: ``request(op, **fields)`` to its fault proxy."""

Entry = tuple[str, dict[str, str]]
_ACKISH = (b"XACK", b"EVALSHA", b"EVAL", b"FCALL", b"EXEC")


class _CrashBeforeAck(Connection):
    """A connection that SIGKILLs its own process before its Nth ack-carrying send.

    "Ack-carrying" means a packet holding ``XACK``, a script call or ``EXEC``:
    whatever the learner uses to acknowledge, the process dies before the
    server sees it, exactly like a consumer killed between effect and ack.
    With ``only_acks`` false every packet counts, so the crash can land
    between any two commands (between "mark processed" and the effect).
    """

    crash_at = 0
    sent = 0
    only_acks = True

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:  # noqa: FBT001, FBT002 - redis-py's signature
        chunks = [command] if isinstance(command, (bytes, str)) else list(command)
        packet = b"".join(c.encode() if isinstance(c, str) else bytes(c) for c in chunks).upper()
        if not self.only_acks or any(b"\r\n" + name + b"\r\n" in packet for name in _ACKISH):
            type(self).sent += 1
            if type(self).sent >= type(self).crash_at > 0:
                os.kill(os.getpid(), signal.SIGKILL)
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


def crashing_client(url: str, *, crash_at: int, only_acks: bool = True) -> redis.Redis:
    """Return a client whose process is SIGKILLed just before its ``crash_at``-th ack is sent.

    ``crash_at=0`` never crashes. With ``only_acks=False`` every command sent counts.
    """
    attributes = {"crash_at": crash_at, "sent": 0, "only_acks": only_acks}
    kind = type("CrashBeforeAck", (_CrashBeforeAck,), attributes)
    return broker.client_for_url(url, decode_responses=True, connection_class=kind)


class _CrashBetween(Connection):
    """A connection that SIGKILLs its process between two steps that should be one.

    After a packet carrying ``first`` but not ``then`` was sent, the next packet
    carrying ``then`` is never sent: the process dies. Code that sends both in
    one packet (``MULTI``/``EXEC``, a Lua script) never opens that window and
    never crashes.
    """

    first = b"XADD"
    then = b"XACK"
    armed = False

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:  # noqa: FBT001, FBT002 - redis-py's signature
        chunks = [command] if isinstance(command, (bytes, str)) else list(command)
        packet = b"".join(c.encode() if isinstance(c, str) else bytes(c) for c in chunks).upper()
        has_first = b"\r\n" + self.first + b"\r\n" in packet
        has_then = b"\r\n" + self.then + b"\r\n" in packet
        if has_then and not has_first and type(self).armed:
            os.kill(os.getpid(), signal.SIGKILL)
        if has_first and not has_then:
            type(self).armed = True
        super().send_packed_command(command, check_health)  # type: ignore[no-untyped-call]


def crash_between(url: str, *, first: str, then: str) -> redis.Redis:
    """Return a client whose process dies if it sends ``first`` and ``then`` as two steps."""
    attributes = {"first": first.upper().encode(), "then": then.upper().encode(), "armed": False}
    kind = type("CrashBetween", (_CrashBetween,), attributes)
    return broker.client_for_url(url, decode_responses=True, connection_class=kind)


class Worker:
    """A forked process running one function; killed for real (SIGKILL) when asked."""

    def __init__(self, pid: int, *, proxied: bool = False) -> None:
        """Wrap a forked process; use :func:`fork`."""
        self._pid = pid
        self._code: int | None = None
        self.proxied = proxied
        """Whether the grader's fault proxy watches it (else it counts its own commands)."""

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return self._pid

    @property
    def alive(self) -> bool:
        """Whether it still runs."""
        return self._poll() is None

    @property
    def exitcode(self) -> int | None:
        """Its exit status; ``-9`` after a SIGKILL."""
        return self._poll()

    def _poll(self) -> int | None:
        if self._code is None:
            try:
                pid, status = os.waitpid(self._pid, os.WNOHANG)
            except ChildProcessError:
                return None
            if pid:
                self._code = os.waitstatus_to_exitcode(status)
        return self._code

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; return whether it ended."""
        deadline = time.monotonic() + timeout
        while self._poll() is None and time.monotonic() < deadline:
            time.sleep(0.002)
        return self._poll() is not None

    def kill(self) -> None:
        """SIGKILL it and reap it."""
        if self._poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._pid, signal.SIGKILL)
            self.join(5.0)

    def counted(self) -> list[str]:
        """The commands the fault proxy counted for it (a dry run: ``die_before=0``)."""
        if not self.proxied or _CONTROL is None:
            return []
        return [str(name) for name in _CONTROL("counted", pid=self._pid).get("counted", [])]


def fork(
    target: Callable[..., Any],
    *args: Any,
    die_before: int = 0,
    only: Collection[str] | None = None,
    ignore_scripts: Collection[str] = (_lua.RECLAIM,),
) -> Worker:
    """Run ``target(*args)`` in a forked child (cheap: the modules are already imported).

    Args:
        target: The function the child runs (then it exits 0, or 1 if it raised).
        args: Its arguments.
        die_before: ``n > 0``: the child is SIGKILLed when its ``n``-th counted
            command reaches the fault proxy, on whatever connection (that command
            never runs); ``0``: it is only counted (:meth:`Worker.counted`).
        only: Count only these commands (e.g. :data:`ACKS`); default every
            command but a consumer's reads and bookkeeping
            (:data:`eventlab._crash.BACKGROUND`).
        ignore_scripts: Lua scripts (text) whose calls are not counted — the
            check's own workload steps, so only the learner's commands count.
    """
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: wait until the proxy watches us, then run
        os.close(write)
        code = 1
        try:
            proxied = os.read(read, 1) == b"1"
            os.close(read)
            with _fallback(die_before, proxied=proxied, ignore_scripts=ignore_scripts):
                target(*args)
            code = 0
        except BaseException:  # noqa: BLE001 - a child reports and exits, never returns
            traceback.print_exc()
        finally:
            with contextlib.suppress(Exception):
                sys.stdout.flush()
                sys.stderr.flush()
            os._exit(code)
    os.close(read)
    proxied = False
    if _CONTROL is not None:
        reply = _CONTROL(
            "doom",
            pid=pid,
            before=die_before,
            only=None if only is None else list(only),
            ignore_scripts=list(ignore_scripts),
        )
        proxied = bool(reply.get("ok"))
    os.write(write, b"1" if proxied else b"0")
    os.close(write)
    return Worker(pid, proxied=proxied)


@contextlib.contextmanager
def _fallback(die_before: int, *, proxied: bool, ignore_scripts: Collection[str]) -> Any:
    """Without the grader's proxy, count this process's own redis-py commands."""
    if proxied or die_before <= 0:
        yield
        return
    if die_before == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    with _crash.die_after_commands(die_before - 1, ignore_scripts=ignore_scripts):
        yield


def sweep(
    target: Callable[..., Any],
    *args: Any,
    positions: Iterable[int],
    timeout: float,
    after_each: Callable[[int], None] | None = None,
    only: Collection[str] | None = None,
    ignore_scripts: Collection[str] = (_lua.RECLAIM,),
    commands: list[list[str]] | None = None,
) -> list[int]:
    """Run ``target(*args)`` once per position ``n``, killed before its ``n``-th command.

    Runs go one after another (each in a new forked process, so a consumer
    that dies leaves its entries for the next); ``after_each(n)`` checks an
    invariant after each run. Returns the positions at which a run was killed
    (a run that finished first sent fewer commands). ``commands``, when given,
    receives each run's counted commands in order (the command log, for
    order checks such as :func:`out_of_order`).

    Raises:
        AssertionError: A run did not end within ``timeout`` seconds.
    """
    killed = []
    for position in positions:
        worker = fork(target, *args, die_before=position, only=only, ignore_scripts=ignore_scripts)
        if not worker.join(timeout):
            worker.kill()
            raise AssertionError(f"a run did not finish within {timeout:.0f} s (an endless loop?)")
        if worker.exitcode == -signal.SIGKILL:
            killed.append(position)
        if commands is not None:
            commands.append(worker.counted())
        if after_each is not None:
            after_each(position)
    return killed


def publish_all(client: redis.Redis, stream: str, events: Iterable[Event]) -> list[str]:
    """XADD every event (pipelined); return the entry ids."""
    pipe = client.pipeline(transaction=False)
    for event in events:
        pipe.xadd(stream, event.to_fields())  # type: ignore[arg-type]
    return [str(entry) for entry in pipe.execute()]


def read_new(
    client: redis.Redis, stream: str, group: str, consumer: str, *, count: int
) -> list[Entry]:
    """XREADGROUP ``>`` once, without blocking; return the entries."""
    return read_entries(client.xreadgroup(group, consumer, {stream: ">"}, count=count))


def read_entries(reply: Any) -> list[Entry]:
    """Return the entries of an ``XREADGROUP``/``XREAD`` reply, whatever shape it was parsed into.

    A plain client gives ``[[stream, [(id, fields), …]], …]``; inside a cluster
    client's transaction redis-py hands back the server's map instead
    (``{stream: [[id, [field, value, …]], …]}``).
    """
    batches = reply.values() if isinstance(reply, dict) else [b for _, b in reply or []]
    found: list[Entry] = []
    for batch in batches:
        for entry_id, fields in batch:
            pairs = (
                fields if isinstance(fields, dict) else zip(fields[::2], fields[1::2], strict=True)
            )
            found.append((str(entry_id), {str(k): str(v) for k, v in dict(pairs).items()}))
    return found


def reclaim_all(
    client: redis.Redis, stream: str, group: str, consumer: str, *, min_idle: float
) -> list[Entry]:
    """XAUTOCLAIM every entry idle at least ``min_idle`` seconds, following the cursor."""
    cursor = "0-0"
    found: list[Entry] = []
    for _ in range(10_000):
        reply: Any = client.xautoclaim(
            stream, group, consumer, min_idle_time=int(min_idle * 1000), start_id=cursor, count=100
        )
        cursor = str(reply[0])
        found.extend((str(i), dict(f)) for i, f in reply[1] if f is not None)
        if cursor == "0-0":
            break
    return found


def pending_count(client: redis.Redis, stream: str, group: str) -> int:
    """Return the size of ``group``'s pending list."""
    return int(client.xpending(stream, group)["pending"])


def entries_in(client: redis.Redis, stream: str) -> list[Entry]:
    """Return every entry of ``stream`` (XRANGE)."""
    reply: Any = client.xrange(stream)
    return [(str(i), dict(f)) for i, f in reply]


def out_of_order(log: Iterable[str], *, first: str, then: str) -> bool:
    """Whether ``then`` occurs in ``log`` before any ``first`` (a step done out of order).

    ``log`` is a sequence of labels in the order they happened: the commands a
    process sent (:meth:`Worker.counted`, from the fault proxy), or a lab
    runtime's record of events and commands (L07: a cancel before the release
    was confirmed).
    """
    for label in log:
        if label == first:
            return False
        if label == then:
            return True
    return False
