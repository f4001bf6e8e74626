"""Helpers for lab checks: seeded workloads, forked workers that really die, bounded loops.

Used by ``solutions/*/checks.py`` (see :mod:`eventlab.grading`). Everything is
bounded in rounds or seconds, so learner code that never acks or never returns
makes a check fail, not hang (the grader's per-check timeout is the last line).
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from collections.abc import Callable, Iterable
from typing import Any

import redis
from redis.connection import Connection

from eventlab import broker
from eventlab._poll import poll as wait_until
from eventlab.envelope import Event

__all__ = [
    "Worker",
    "crash_between",
    "crashing_client",
    "entries_in",
    "fork",
    "pending_count",
    "publish_all",
    "read_new",
    "reclaim_all",
    "wait_until",
]

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

    def __init__(self, process: Any) -> None:
        """Wrap a started process; use :func:`fork`."""
        self._process = process

    @property
    def pid(self) -> int:
        """The worker's process id."""
        return int(self._process.pid)

    @property
    def alive(self) -> bool:
        """Whether it still runs."""
        return bool(self._process.is_alive())

    @property
    def exitcode(self) -> int | None:
        """Its exit status; ``-9`` after a SIGKILL."""
        code = self._process.exitcode
        return None if code is None else int(code)

    def join(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds; return whether it ended."""
        self._process.join(timeout)
        return not self._process.is_alive()

    def kill(self) -> None:
        """SIGKILL it and reap it."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        self._process.join(5.0)


def fork(target: Callable[..., Any], *args: Any) -> Worker:
    """Run ``target(*args)`` in a forked child (cheap: the modules are already imported)."""
    context = multiprocessing.get_context("fork")
    process = context.Process(target=target, args=args, daemon=True)
    process.start()
    return Worker(process)


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
    reply: Any = client.xreadgroup(group, consumer, {stream: ">"}, count=count)
    return [(str(i), dict(f)) for _, batch in reply or [] for i, f in batch]


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
