"""Lab 03 — an idempotent consumer.

``PaymentReceived`` events (``data = {"account": ..., "amount": ...}``) arrive
on a stream at least once: a producer retried some publishes (the same event
id twice), and the consumer may be killed after its effect but before its ack,
so the event is delivered again. Write :func:`handle` so that every event
credits its amount to its account exactly once, and is acknowledged. The
notebook's hints (idea, commands, skeleton) are there if you want them.

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
    """Credit ``event`` to its account exactly once per event id, and acknowledge ``entry_id``.

    The effect: ``event.data["amount"]`` added to ``event.data["account"]``'s
    balance in the hash :func:`balances_key`. The store of applied event ids is
    :func:`processed_key` (a set; its shape is up to you).

    Guarantees (the grader checks each one, on a real broker):

    * **once per event id** — an event published twice (same ``event.id``,
      another entry id) or delivered again after a crash changes the balance
      only the first time;
    * **any crash is harmless** — if the process dies between any two of the
      commands this function sends, the redelivered entry (handled by another
      consumer) leaves the balance exactly right: nothing lost, nothing doubled;
    * **acknowledged** — once it returns, ``entry_id`` is no longer pending in
      ``group`` (a duplicate is acknowledged too).

    Failure: a broker error propagates (the entry stays pending and is
    redelivered); the function never swallows it.
    """
    # BEGIN SOLUTION
    script = client.register_script(
        """
        if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then
          redis.call('HINCRBY', KEYS[2], ARGV[2], ARGV[3])
        end
        return redis.call('XACK', KEYS[3], ARGV[4], ARGV[5])
        """
    )
    script(
        keys=[processed_key(stream, group), balances_key(stream), stream],
        args=[event.id, event.data["account"], int(event.data["amount"]), group, entry_id],
    )
    # END SOLUTION
