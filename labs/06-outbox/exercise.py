"""Lab 06 — the dual write: publish through an outbox, so a crash loses nothing.

The orders service accepts an order by changing its own state (the hash
:func:`state_key`: order id -> ``"accepted"``) and telling the other services
(the order's ``OrderAccepted`` event on the shop's public ``stream``). Those are
two writes to two systems: in production the service's database and the
broker. A process that dies between them leaves a state change nobody ever
hears about (or an event about an order the service never accepted). Retrying
cannot help: the process that would retry is dead.

The service may write atomically only to its own keys (:func:`state_key`,
:func:`outbox_key`, :func:`position_key`; derived from ``stream``, they share
its hash tag, so one transaction may span them on a Redis Cluster too): a
transactional outbox. Write the two halves: :func:`accept`, what the service
does, and :func:`relay`, the separate process that gets the events out. The
notebook's hints (idea, commands, skeleton) are there if you want them.
"""

from __future__ import annotations

import redis

from eventlab.envelope import Event


def state_key(stream: str) -> str:
    """The service's state: a hash of order id -> ``"accepted"`` (its own key)."""
    return f"{stream}:orders-state"


def outbox_key(stream: str) -> str:
    """The service's outbox: a stream of events waiting to be published (its own key)."""
    return f"{stream}:orders-outbox"


def position_key(stream: str) -> str:
    """Where the relay records how far it got (its own key)."""
    return f"{stream}:orders-outbox:relayed"


def accept(client: redis.Redis, stream: str, order_id: str, event: Event) -> None:
    """Accept ``order_id`` and make sure ``event`` (its ``OrderAccepted``) will be published.

    Guarantees (the grader checks each one, on a real broker):

    * **afterwards** — ``state_key(stream)`` maps ``order_id`` to
      ``"accepted"``, and :func:`relay` will publish ``event`` (its id and
      fields unchanged) to ``stream``;
    * **any crash is harmless** — if the process dies between any two commands
      this function sends, either both happened (the state changed, the event
      will be published) or neither did: never one without the other;
    * **own keys only** — it writes nothing to ``stream`` itself (that is the
      broker's, in production another system); only :func:`relay` publishes.

    Failure: a broker error propagates, with nothing half-written.
    """
    raise NotImplementedError


def relay(client: redis.Redis, stream: str, *, batch: int = 100) -> int:
    """Publish to ``stream`` every outbox event not published yet, in outbox order; return how many.

    Guarantees:

    * **nothing lost** — every event :func:`accept` committed reaches
      ``stream``, with its fields (and so its event id) unchanged, in the order
      the outbox holds them;
    * **resumes** — a later call publishes only what was committed since (a
      call with nothing new publishes nothing and returns 0);
    * **crash-safe** — if the relay dies between any two of its commands, the
      next call still publishes everything not yet published. Publishing an
      event twice after such a crash is allowed (consumers dedupe by event id),
      losing one is not.

    ``batch`` bounds how many events one round trip reads or publishes.
    """
    raise NotImplementedError
