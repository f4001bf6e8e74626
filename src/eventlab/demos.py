"""Small services the lessons run as real processes and kill, and a way to wait for them.

Introduced in lesson 03 (a consumer killed before it acks).

Each is a ``module:function`` for :func:`eventlab.processes.spawn`; arguments
arrive as strings. The effect of a ``Deposited`` event is ``HINCRBY
<stream>:balance <subject> <amount>``, so a duplicated effect shows up as
money that was never deposited.

* :func:`naive` applies the effect, then acknowledges: a kill between the two
  leaves an applied effect whose entry is still pending, and the restart
  applies it again (lesson 03's duplicate).
* :func:`scripted` runs a Lua script the notebook wrote for each entry: effect,
  dedupe mark and XACK in one call, so a kill lands before it or after it.
* :func:`reliable` is the same service on :class:`eventlab.consumer.Reliable`:
  effect, dedupe mark and XACK in one atomic call. With ``die_after`` it kills
  itself right after that many commit commands were answered
  (:mod:`eventlab._crash`): a commit of two commands would be cut between them.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import redis

from eventlab import streams
from eventlab._crash import die_after_commands
from eventlab._poll import await_until, wait_until
from eventlab.consumer import Effects, Reliable
from eventlab.envelope import Event
from eventlab.processes import signal_ready

__all__ = [
    "await_until",
    "balance_key",
    "drained",
    "naive",
    "reliable",
    "scripted",
    "seen_key",
    "wait_until",
]


def drained(client: redis.Redis, stream: str, group: str) -> bool:
    """Return whether ``group`` has read and acknowledged every entry (lag 0, pending 0)."""
    groups: list[dict[str, Any]] = client.xinfo_groups(stream)
    info = next((g for g in groups if g["name"] == group), None)
    return info is not None and info.get("lag") == 0 and int(info["pending"]) == 0


def balance_key(stream: str) -> str:
    """Return the hash that holds the balance per account (the ``subject``) for ``stream``."""
    return f"{stream}:balance"


def seen_key(stream: str) -> str:
    """Return the set of event ids :func:`scripted`'s script has applied for ``stream``."""
    return f"{stream}:seen"


def naive(url: str, stream: str, group: str, consumer: str, pause: str = "0") -> None:
    """Apply each deposit, wait ``pause`` seconds, then XACK it; run until killed.

    On start it first re-reads its own pending entries (``XREADGROUP … 0``), as a
    careful restart should, then new ones (``>``).
    """
    client = redis.Redis.from_url(url, decode_responses=True)
    streams.create_group(client, stream, group, start="0")
    signal_ready()
    cursor = "0"  # own pending entries first
    while True:
        reply: Any = client.xreadgroup(group, consumer, {stream: cursor}, count=10, block=100)
        entries: list[tuple[str, dict[str, str]]] = reply[0][1] if reply else []
        if cursor == "0" and not entries:
            cursor = ">"
        for entry_id, fields in entries:
            event = Event.from_fields(fields)
            client.hincrby(balance_key(stream), str(event.subject), int(event.data["amount"]))
            time.sleep(float(pause))  # work after the effect: a crash here duplicates it
            client.xack(stream, group, entry_id)


def scripted(  # noqa: PLR0917 - spawn passes arguments by position
    url: str, stream: str, group: str, consumer: str, lua: str, pause: str = "0"
) -> None:
    """Handle each deposit with one call of the Lua script ``lua``; run until killed.

    For every entry it waits ``pause`` seconds (the work before the write: a kill
    here leaves nothing applied and the entry pending), then calls the script with
    ``KEYS = [stream, balance_key(stream), seen_key(stream)]`` and
    ``ARGV = [group, entry id, event id, account, amount]``. Lesson 03 writes the
    script: effect, dedupe mark and XACK in one atomic step. Like :func:`naive` it
    re-reads its own pending entries first on start.
    """
    client = redis.Redis.from_url(url, decode_responses=True)
    streams.create_group(client, stream, group, start="0")
    script = client.register_script(lua)
    keys = [stream, balance_key(stream), seen_key(stream)]
    signal_ready()
    cursor = "0"
    while True:
        reply: Any = client.xreadgroup(group, consumer, {stream: cursor}, count=10, block=100)
        entries: list[tuple[str, dict[str, str]]] = reply[0][1] if reply else []
        if cursor == "0" and not entries:
            cursor = ">"
        for entry_id, fields in entries:
            event = Event.from_fields(fields)
            time.sleep(float(pause))  # a crash here: nothing applied, the entry still pending
            amount = int(event.data["amount"])
            args: list[str | int] = [group, entry_id, event.id, str(event.subject), amount]
            script(keys=keys, args=args)


async def reliable(  # noqa: PLR0917 - spawn passes arguments by position
    url: str,
    stream: str,
    group: str,
    consumer: str,
    pause: str = "0",
    batch: str = "2",
    die_after: str = "0",
) -> None:
    """The same deposits on the reliable runtime: effect, dedupe mark and XACK are atomic.

    ``die_after`` N > 0: SIGKILL this process right after the server answered its
    Nth commit command ("1": right after the first command of the first commit).
    """
    runtime = Reliable(url, consumer=consumer)

    @runtime.subscriber(stream, group=group, start="0", batch=int(batch), block=0.1, min_idle=1.0)
    async def deposit(event: Event, effects: Effects) -> None:
        await asyncio.sleep(float(pause))  # a crash here leaves nothing applied, nothing acked
        effects.hincrby(balance_key(stream), str(event.subject), int(event.data["amount"]))

    crash = die_after_commands(int(die_after)) if int(die_after) else contextlib.nullcontext()
    with crash:
        await runtime.run()
