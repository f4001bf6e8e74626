"""Lab 04a — retries and dead letters.

A handler fails in two ways: *transient* errors (:class:`TransientError`: a
timeout, a busy dependency) that succeed if tried again, and *permanent* ones
(any other exception, or fields that do not decode into an event) that never
will. On Redis, faststream's ``nack()`` does nothing: a failed entry just stays
in the pending list forever. Write the two decisions the runtime is missing:

* :func:`on_failure` — retry the entry (the loop redelivers it once it has
  been idle a moment) or dead-letter it, with its reason, so it is never lost;
* :func:`redrive` — move chosen dead letters back onto the stream once the
  cause is fixed, exactly once each.

The notebook's hints (idea, commands, skeleton) are there if you want them.

The grader runs the delivery loop (read, handle, call ``on_failure`` on an
error, reclaim idle entries) and counts deliveries for you.
"""

from __future__ import annotations

import redis

from eventlab.streams import dlq_key

MAX_DELIVERIES = 3
"""Dead-letter an entry that failed this many deliveries, even with a transient error."""

DEAD_LETTER_FIELDS = ("reason", "error", "deliveries", "original_id", "group")
"""Fields a dead letter carries besides the original entry's fields."""


class TransientError(Exception):
    """A failure worth retrying: the same event may succeed on a later delivery."""


def on_failure(
    client: redis.Redis,
    stream: str,
    group: str,
    entry_id: str,
    fields: dict[str, str],
    *,
    error: Exception,
    deliveries: int,
) -> str:
    """Decide what happens to an entry whose handling raised ``error``; return the decision.

    Returns ``"retry"`` or ``"dead"``:

    * ``"retry"`` — for a :class:`TransientError` on fewer than
      :data:`MAX_DELIVERIES` deliveries. The entry must stay pending, untouched,
      so the delivery loop redelivers it.
    * ``"dead"`` — for anything else (a permanent error, or a transient one that
      used up its deliveries). Afterwards the entry is no longer pending in
      ``group``, and ``dlq_key(stream)`` holds exactly one dead letter for it:
      the original ``fields`` unchanged, plus :data:`DEAD_LETTER_FIELDS` —
      ``reason`` (a readable sentence), ``error`` (the exception's type name),
      ``deliveries``, ``original_id`` (``entry_id``) and ``group``.

    Invariant under crashes: if the process dies at any instant inside this
    function, the entry is either still pending with no dead letter, or acked
    with its dead letter written — never acked without a dead letter (lost),
    never dead-lettered but still pending (dead-lettered twice on redelivery).
    """
    raise NotImplementedError


def redrive(client: redis.Redis, stream: str, *, original_ids: list[str] | None = None) -> int:
    """Move dead letters back onto ``stream``; return how many moved.

    Moves those whose ``original_id`` is in ``original_ids`` (every dead letter
    when ``None``); the others stay. A moved entry is appended to ``stream``
    with its original fields only (no :data:`DEAD_LETTER_FIELDS`) and is gone
    from the dead-letter stream.

    Invariants: each dead letter moves exactly once — a second call moves
    nothing and returns 0 — and a crash at any instant never leaves an entry
    both back on ``stream`` and still in the dead-letter stream, nor in neither.
    """
    raise NotImplementedError
