"""A dead-letter step in two commands: acknowledge, then write the dead letter.

Not graded and not an answer: the notebook runs it to show the failure this lab
is about. :func:`dies_before` stands for the process being killed just before
one command is sent (``Crash`` is raised there, so nothing after it runs).
Your work is in ``exercise.py``.
"""

from __future__ import annotations

from typing import Any

import redis

from eventlab.streams import dlq_key


class Crash(Exception):  # noqa: N818 - it stands for the process dying
    """The process died here: nothing after this point ran."""


def dies_before(url: str, command: str) -> redis.Redis:
    """Return a client whose process "dies" (raises :class:`Crash`) just before ``command``."""

    class Doomed(redis.Redis):
        def execute_command(self, *args: Any, **options: Any) -> Any:
            if str(args[0]).upper() == command.upper():
                raise Crash(f"killed just before {command}")
            return super().execute_command(*args, **options)

    return Doomed.from_url(url, decode_responses=True)


def on_failure(
    client: redis.Redis,
    stream: str,
    group: str,
    entry_id: str,
    fields: dict[str, str],
    *,
    error: Exception,
) -> str:
    """Acknowledge the failed entry, then write its dead letter: two separate steps."""
    client.xack(stream, group, entry_id)
    dead = {**fields, "reason": str(error), "original_id": entry_id}
    client.xadd(dlq_key(stream), dead)  # type: ignore[arg-type]
    return "dead"
