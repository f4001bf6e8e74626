"""Subscription options, defined once: :meth:`Reliable.subscriber` takes them as keywords.

Part of :mod:`eventlab.consumer` (lessons 03 and 04); import from there.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eventlab.consumer._types import DEDUPE_MAX, DLQ_MAXLEN, Backoff, ConsumerError
from eventlab.envelope import Event
from eventlab.streams import StreamError, check_start


@dataclass(frozen=True, slots=True)
class SubscriptionOptions:
    """How one subscription reads, retries, dead-letters and deduplicates.

    :meth:`Reliable.subscriber` takes every attribute as a keyword
    (``subscriber(stream, start="0", min_idle=5.0)``) and checks them here.

    Attributes:
        start: Where a new group starts: ``"0"`` the whole history, ``"$"``
            only events added from now on. Always explicit.
        group: The consumer group (the owning service: ``"billing"``); default
            the ``StreamSub``'s.
        consumer: This consumer's name in the group (default: the ``StreamSub``'s,
            else the runtime's).
        batch: Entries per read (``XREADGROUP COUNT``); default the
            ``StreamSub``'s ``max_records``, else 100.
        block: Seconds a read waits for new entries; default the ``StreamSub``'s
            ``polling_interval``, else 0.2.
        min_idle: Seconds an entry must sit unacked before another consumer
            reclaims it. Longer than your slowest handler.
        reclaim_every: Seconds between reclaim scans (default ``min_idle / 4``, ≤ 1 s).
        attempts: Handler tries per delivery (in process, with backoff).
        backoff: Delays between tries and between deliveries.
        retry_timeout: Seconds the in-process tries of one event may take.
        max_deliveries: Deliveries before an event that keeps failing is dead-lettered.
        permanent: Exception types that dead-letter at once (plus :class:`PermanentError`).
        dedupe: Skip an event id already processed by this group (and apply
            its effects once). Turn off only for measurements.
        dedupe_window: Seconds an event id is remembered.
        dedupe_max: At most this many event ids are remembered per group
            (default :data:`DEDUPE_MAX`); past it the oldest are forgotten
            first, and an event redelivered after its id was forgotten is
            applied again. ``None``: only the window bounds the store.
        recreate_group: Recreate the group at ``start`` if the broker lost it.
        dlq_maxlen: Trim ``<stream>:dlq`` to about this many entries (default
            :data:`DLQ_MAXLEN`; the oldest dead letters are dropped first).
            ``None`` keeps every dead letter.
        seed: Seed of the backoff jitter (repeatable runs); ``None`` for random.
        validate: Called with each decoded event before the handler (e.g.
            ``schema.Registry.validate``); it may return a replacement event
            (defaults filled, upcast). If it raises, the event is dead-lettered
            at once with the reason: invalid data never becomes valid by retrying.
        cluster_safe: Refuse effect keys outside the stream's Redis Cluster hash
            slot (the event is dead-lettered with the fix). ``False`` allows
            effects on any key, e.g. ``effects.publish`` to another stream — on
            one broker only: one Lua call cannot span slots on a cluster.

    Introduced in lesson 04 (retries and dead letters).
    """

    start: str
    group: str | None = None
    consumer: str | None = None
    batch: int | None = None
    block: float | None = None
    min_idle: float = 30.0
    reclaim_every: float | None = None
    attempts: int = 3
    backoff: Backoff = field(default_factory=Backoff)
    retry_timeout: float = 10.0
    max_deliveries: int = 5
    permanent: tuple[type[BaseException], ...] = ()
    dedupe: bool = True
    dedupe_window: float = 24 * 3600.0
    dedupe_max: int | None = DEDUPE_MAX
    recreate_group: bool = False
    dlq_maxlen: int | None = DLQ_MAXLEN
    seed: int | None = 0
    validate: Callable[[Event], Event | None] | None = None
    cluster_safe: bool = True

    def __post_init__(self) -> None:
        """Refuse a start that is not a group position and counts or seconds that are not > 0."""
        try:
            check_start(self.start)
        except StreamError as exc:
            raise ConsumerError(exc.args[0], fix=exc.fix) from None
        positive = {
            "batch": self.batch,
            "block": self.block,
            "min_idle": self.min_idle,
            "attempts": self.attempts,
            "max_deliveries": self.max_deliveries,
            "dedupe_window": self.dedupe_window,
        }
        for name, value in positive.items():
            if value is not None and value <= 0:
                raise ConsumerError(f"{name}={value!r} must be positive", fix=f"pass {name} > 0")
        if self.retry_timeout < 0:
            raise ConsumerError("retry_timeout is negative", fix="pass seconds >= 0")
        object.__setattr__(self, "permanent", tuple(self.permanent))

    @classmethod
    def of(cls, options: dict[str, Any]) -> SubscriptionOptions:
        """Build from :meth:`Reliable.subscriber`'s keywords; an unknown one names the known."""
        unknown = sorted(set(options) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            known = ", ".join(f.name for f in dataclasses.fields(cls))
            raise ConsumerError(
                f"unknown subscriber option(s) {', '.join(unknown)}", fix=f"use one of: {known}"
            )
        return cls(**options)

    def resolved(self, stream: Any, *, consumer: str) -> tuple[str, SubscriptionOptions]:
        """Return the stream key and these options with group, consumer, batch, block filled.

        ``stream`` is a key or a faststream ``StreamSub`` (its ``name``, ``group``,
        ``consumer``, ``max_records`` and ``polling_interval`` fill what is unset);
        ``consumer`` is the runtime's default name.
        """
        group, name_in_group, batch, block = self.group, self.consumer, self.batch, self.block
        if isinstance(stream, str):
            name = stream
        else:  # a faststream StreamSub
            name = str(getattr(stream, "name", "") or "")
            group = group or getattr(stream, "group", None)
            name_in_group = name_in_group or getattr(stream, "consumer", None)
            batch = batch or getattr(stream, "max_records", None)
            interval = getattr(stream, "polling_interval", None)
            if block is None and interval:
                block = float(interval) / 1000.0
        if not name:
            raise ConsumerError("no stream given", fix="pass a key such as '{lab:orders}'")
        if not group:
            raise ConsumerError(
                f"no consumer group for {name}",
                fix="pass group='<service name>' (groups are named after the owning service)",
            )
        filled = dataclasses.replace(
            self,
            group=group,
            consumer=name_in_group or consumer,
            batch=batch or 100,
            block=0.2 if block is None else block,
        )
        return name, filled


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return inspect.Parameter.empty


def subscriber_signature(method: Callable[..., Any]) -> inspect.Signature:
    """``method``'s signature with the options spelled out (what ``help()`` and Jupyter show)."""
    head = list(inspect.signature(method).parameters.values())[:2]  # self, stream
    options = [
        inspect.Parameter(
            f.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=_default(f),
            annotation=f.type,
        )
        for f in dataclasses.fields(SubscriptionOptions)
    ]
    return inspect.Signature([*head, *options], return_annotation="Callable[[Handler], Handler]")
