"""A counting consumer to run as its own process (crash tests and demos kill it).

``processes.spawn("tests._consumer_demo:counter", args=[url, stream, group, consumer])``
runs a :class:`eventlab.consumer.Reliable` subscriber whose effect is
``HINCRBY <stream>:effects <event id> 1``: after any crash, every event id must
count exactly 1. With ``die_after`` N > 0 the process SIGKILLs itself right
after its Nth commit step was answered (:mod:`eventlab._crash`).
"""

from __future__ import annotations

import asyncio
import contextlib

from eventlab._crash import die_after_commands
from eventlab.consumer import Effects, Reliable
from eventlab.envelope import Event


def effects_key(stream: str) -> str:
    """Return the hash where :func:`counter` counts effects per event id."""
    return f"{stream}:effects"


async def counter(  # noqa: PLR0917 - spawn passes arguments by position
    url: str,
    stream: str,
    group: str,
    consumer: str,
    min_idle: str = "1.0",
    delay: str = "0",
    batch: str = "10",
    die_after: str = "0",
) -> None:
    """Count each event once in ``<stream>:effects``; sleep ``delay`` seconds per event.

    ``die_after``: SIGKILL this process right after its Nth commit step ("0": never).
    """
    pause = float(delay)
    reliable = Reliable(url, consumer=consumer)

    @reliable.subscriber(
        stream, group=group, start="0", batch=int(batch), min_idle=float(min_idle), block=0.1
    )
    async def count(event: Event, effects: Effects) -> None:
        if pause:
            await asyncio.sleep(pause)
        effects.hincrby(effects_key(stream), event.id, 1)

    crash = die_after_commands(int(die_after)) if int(die_after) else contextlib.nullcontext()
    with crash:
        await reliable.run()
