"""Lab 04a — retries and dead letters.

A handler fails in two ways: *transient* errors (:class:`TransientError`: a
timeout, a busy dependency) that succeed if tried again, and *permanent* ones
(any other exception, or fields that do not decode into an event) that never
will. On Redis, faststream's ``nack()`` does nothing: a failed entry just stays
in the pending list forever. Write the two decisions the runtime is missing:

* :func:`on_failure` — retry (leave the entry pending; the loop redelivers it
  once it has been idle a moment) or dead-letter it: copy it to
  ``dlq_key(stream)`` with the reason, and acknowledge it, atomically;
* :func:`redrive` — move chosen dead letters back onto the stream once the
  cause is fixed, exactly once each.

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
    """Decide what happens to an entry whose handling raised ``error``.

    Return ``"retry"`` for a :class:`TransientError` delivered fewer than
    :data:`MAX_DELIVERIES` times (do nothing else: it stays pending). Otherwise
    return ``"dead"`` after, in ONE transaction (``client.pipeline()`` is
    MULTI/EXEC), XADDing to ``dlq_key(stream)`` the original ``fields`` plus
    ``reason`` (a readable sentence), ``error`` (the exception type name),
    ``deliveries``, ``original_id`` (``entry_id``) and ``group``, and XACKing
    ``entry_id``.
    """
    raise NotImplementedError


def redrive(client: redis.Redis, stream: str, *, original_ids: list[str] | None = None) -> int:
    """Move dead letters back onto ``stream``; return how many moved.

    Only those whose ``original_id`` is in ``original_ids`` (all when ``None``).
    Each moves with its original fields only (drop :data:`DEAD_LETTER_FIELDS`),
    and is deleted from the dead-letter stream in the same transaction, so a
    second call moves nothing (redrive is idempotent).
    """
    raise NotImplementedError
