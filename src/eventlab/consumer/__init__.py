"""The reliable consumer runtime: ack after effect, retries, reclaim, dead letters, idempotency.

faststream's Redis subscriber leaves the hard parts out (docs/architecture.md,
"faststream 0.7.8 on Redis Streams"): its ``nack()`` does nothing, a restarted
consumer never re-reads its pending entries, there are no retries and no dead
letters, and it handles one message per call (~100x slower than a batched loop).
:class:`Reliable` adds those to a faststream service while keeping the handler
per event::

    from faststream import FastStream
    from faststream.redis import RedisBroker, StreamSub
    from eventlab.consumer import Effects, Reliable
    from eventlab.envelope import Event

    broker = RedisBroker(url, logger=None)
    app = FastStream(broker, logger=None)
    reliable = Reliable(broker, app=app)  # starts and stops with the app

    @reliable.subscriber(
        StreamSub("{lab:orders}", group="billing", max_records=100),
        start="0",             # explicit: "0" the whole history, "$" only new events
        min_idle=5.0,          # reclaim entries a crashed consumer held for 5 s
        max_deliveries=5,      # then dead-letter to {lab:orders}:dlq
    )
    async def bill(event: Event, effects: Effects) -> None:
        # Redis writes recorded here are applied atomically with the dedupe
        # mark and the XACK: exactly one effect per event id.
        effects.hincrby("{lab:orders}:billed", event.data["customer"], event.data["total"])

In a notebook, ``async with reliable:`` runs the consumers for the block;
``await reliable.run()`` runs them until SIGTERM/SIGINT (a service process).

What each failure does (docs/runtime.md has the whole table):

* handler raises → retried in process (``attempts``, exponential backoff with
  seeded jitter, bounded by ``retry_timeout`` seconds), then released for
  redelivery; after ``max_deliveries`` deliveries → dead letter with the reason;
* handler raises :class:`PermanentError` (or a type in ``permanent=``), or the
  entry is not a valid event → dead letter at once, nothing lost;
* consumer process dies → its pending entries are reclaimed by a live consumer
  (claimed like XAUTOCLAIM after ``min_idle`` seconds), delivery count kept by the server;
* broker restarts → reconnect with backoff and continue; commits are retried
  (the XACK fence and the dedupe store make a repeated commit harmless);
* consumer group vanished (broker lost its data) → ``health`` turns
  ``"group-missing"`` and an ERROR is logged; recreated only if ``recreate_group=True``.

Introduced in lesson 03 (idempotent consumer) and lesson 04 (retries, dead letters).

The package, by job: ``_types`` (records, errors, :class:`Effects`), ``_options``
(:class:`SubscriptionOptions`, every option of a subscriber, once), ``_engine``
(:class:`Subscription`, the read/handle/commit loop), ``_reliable``
(:class:`Reliable`), ``_dead_letters`` (:func:`dead_letters`, :func:`redrive`).
Import from ``eventlab.consumer``; the submodules are private. The ``eventlab dlq``
command is in :mod:`eventlab.cli.dlq`.
"""

from __future__ import annotations

from eventlab.consumer._dead_letters import aredrive, dead_letters, dead_letters_frame, redrive
from eventlab.consumer._engine import Subscription
from eventlab.consumer._options import SubscriptionOptions
from eventlab.consumer._reliable import Reliable
from eventlab.consumer._types import (
    DEDUPE_MAX,
    DLQ_FIELDS,
    DLQ_MAXLEN,
    Backoff,
    ConsumerError,
    DeadLetter,
    Effects,
    Health,
    HealthState,
    PermanentError,
    seen_key,
)

__all__ = [
    "DEDUPE_MAX",
    "DLQ_FIELDS",
    "DLQ_MAXLEN",
    "Backoff",
    "ConsumerError",
    "DeadLetter",
    "Effects",
    "Health",
    "HealthState",
    "PermanentError",
    "Reliable",
    "Subscription",
    "SubscriptionOptions",
    "aredrive",
    "dead_letters",
    "dead_letters_frame",
    "redrive",
    "seen_key",
]
