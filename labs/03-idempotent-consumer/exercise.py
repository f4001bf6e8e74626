"""Lab 03 — an idempotent consumer.

``PaymentReceived`` events (``data = {"account": ..., "amount": ...}``) arrive
on a stream at least once: a producer retried some publishes (the same event
id twice), and the consumer may be killed after its effect but before its ack,
so the event is delivered again. Write :func:`handle` so that every event
credits its amount to its account exactly once, and is acknowledged.

The grader runs the consumer loop for you (read, hand each entry to
``handle``, reclaim what a killed consumer left pending). Grade with
``eventlab grade .`` or the last cell of the notebook.
"""

from __future__ import annotations

import redis

from eventlab.envelope import Event


def balances_key(stream: str) -> str:
    """The hash of account -> balance (the effect). Same ``{tag}`` as the stream."""
    return f"{stream}:balances"


def processed_key(stream: str, group: str) -> str:
    """A set of event ids this group has already applied (the dedupe store)."""
    return f"{stream}:processed:{group}"


def handle(client: redis.Redis, stream: str, group: str, entry_id: str, event: Event) -> None:
    """Apply ``event``'s effect at most once per event id, then XACK ``entry_id``.

    Effect: ``HINCRBY balances_key(stream) event.data["account"] event.data["amount"]``.
    Dedupe on ``event.id`` (not the entry id: a re-published event gets a new
    entry id). Make "mark processed + effect + ack" one atomic step, so a crash
    can never leave the effect done but the event unmarked.
    """
    raise NotImplementedError
