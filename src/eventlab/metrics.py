"""Per-event timings and outcomes, plus lag and pending samples, as pandas frames.

A :class:`Metrics` recorder is cheap enough to leave on: the consumer runtime
appends one tuple per handled event (no pandas, no locks) and the frames are
built only when asked for::

    from eventlab.metrics import Metrics

    metrics = Metrics()
    # consumer.Reliable(..., metrics=metrics) records every handled event
    metrics.frame()       # one row per handler outcome
    metrics.lag_frame()   # one row per (sample, stream, group)

Introduced in lesson 03 (latency from emit to handle) and lesson 05 (lag).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any, Literal, NamedTuple

import pandas as pd
import redis
import redis.asyncio

__all__ = ["EVENT_COLUMNS", "LAG_COLUMNS", "EventRow", "Metrics", "Outcome"]

Outcome = Literal["ok", "retry", "dead", "duplicate"]
"""What happened to one handler attempt: applied, will be retried, dead-lettered, or skipped."""


class EventRow(NamedTuple):
    """One handler outcome, as :meth:`Metrics.frame` shows it (a named tuple: cheap, columnar).

    Attributes:
        id: The event id.
        type: The event type.
        correlationid: The flow it belongs to.
        causationid: The event that caused it.
        source: Who emitted it.
        stream: The stream it was read from.
        group: The consumer group that handled it.
        consumer: The consumer in the group.
        emitted: The event's own ``time``.
        received: When the consumer read it (``time.time()`` seconds).
        handled: When its outcome was committed (``time.time()`` seconds).
        attempt: The delivery attempt (1 = first).
        outcome: See :data:`Outcome`.

    Introduced in lesson 03.
    """

    id: str
    type: str | None
    correlationid: str | None
    causationid: str | None
    source: str | None
    stream: str
    group: str
    consumer: str
    emitted: datetime | None
    received: float
    handled: float
    attempt: int
    outcome: Outcome


EVENT_COLUMNS = EventRow._fields
"""Columns of :meth:`Metrics.frame`, in order (the fields of :class:`EventRow`)."""

LAG_COLUMNS = ("time", "stream", "group", "length", "lag", "pending")
"""Columns of :meth:`Metrics.lag_frame`, in order."""

_TIME_COLUMNS = ("emitted", "received", "handled")
_UTC_NS: Any = "datetime64[ns, UTC]"  # a str the pandas stubs do not list


class Metrics:
    """Records handled events and lag samples; ``frame()`` / ``lag_frame()`` return DataFrames.

    Memory is bounded: the newest ``max_rows`` events (default 50,000, about
    23 MB at ~455 bytes a row, plus about as much again while :meth:`frame`
    builds its DataFrame) and ``max_samples`` samples are kept; past the bound
    the oldest rows are dropped, so a chart of a long run shows its latest part.

    Introduced in lesson 03.
    """

    def __init__(self, *, max_rows: int = 50_000, max_samples: int = 20_000) -> None:
        """Create an empty recorder (bounded to the newest rows and samples)."""
        self._rows: deque[EventRow] = deque(maxlen=max_rows)
        self._samples: deque[tuple[Any, ...]] = deque(maxlen=max_samples)

    def __len__(self) -> int:
        """Return the number of event rows recorded."""
        return len(self._rows)

    def record(
        self,
        *,
        id: str,  # noqa: A002 - the CloudEvents attribute name
        type: str | None,  # noqa: A002 - the CloudEvents attribute name
        correlationid: str | None,
        causationid: str | None,
        source: str | None,
        stream: str,
        group: str,
        consumer: str,
        emitted: datetime | None,
        received: float,
        handled: float,
        attempt: int,
        outcome: Outcome,
    ) -> None:
        """Record one handler outcome; ``received`` and ``handled`` are ``time.time()`` seconds."""
        self._rows.append(
            EventRow(
                id,
                type,
                correlationid,
                causationid,
                source,
                stream,
                group,
                consumer,
                emitted,
                received,
                handled,
                attempt,
                outcome,
            )
        )

    def extend(self, rows: Iterable[EventRow]) -> None:
        """Append rows the runtime built (its fast path: one call per batch)."""
        self._rows.extend(rows)

    def clear(self) -> None:
        """Forget every row and sample."""
        self._rows.clear()
        self._samples.clear()

    def frame(self) -> pd.DataFrame:
        """Return one row per handler outcome, columns :data:`EVENT_COLUMNS`.

        ``emitted`` is the event's own ``time``; ``received`` when the consumer
        read it; ``handled`` when its outcome was committed (all UTC, ns).
        """
        frame = pd.DataFrame(list(self._rows), columns=list(EVENT_COLUMNS))
        frame["emitted"] = pd.to_datetime(frame["emitted"], utc=True).astype(_UTC_NS)
        for column in ("received", "handled"):
            frame[column] = pd.to_datetime(
                frame[column].astype("float64"), unit="s", utc=True
            ).astype(_UTC_NS)
        frame["attempt"] = frame["attempt"].astype("int64")
        return frame

    def record_sample(
        self,
        *,
        stream: str,
        group: str,
        length: int,
        lag: int | None,
        pending: int,
        at: float | None = None,
    ) -> None:
        """Record one lag sample (``at`` in ``time.time()`` seconds; default now)."""
        self._samples.append(
            (time.time() if at is None else at, stream, group, length, lag, pending)
        )

    def sample(self, client: redis.Redis, streams: Sequence[str]) -> int:
        """Sample length, lag and pending of every group on ``streams`` now; return rows added."""
        now = time.time()
        added = 0
        for stream in streams:
            try:
                length = int(client.xlen(stream))
                groups: list[dict[str, Any]] = client.xinfo_groups(stream)
            except redis.ResponseError:
                continue  # not a stream yet
            for group in groups:
                self._add_group_sample(now, stream, length, group)
                added += 1
        return added

    async def asample(self, client: redis.asyncio.Redis, streams: Sequence[str]) -> int:
        """Asyncio :meth:`sample`."""
        now = time.time()
        added = 0
        for stream in streams:
            try:
                pipe = client.pipeline(transaction=False)
                pipe.xlen(stream)
                pipe.xinfo_groups(stream)
                length, groups = await pipe.execute()
            except redis.ResponseError:
                continue
            for group in groups:
                self._add_group_sample(now, stream, int(length), group)
                added += 1
        return added

    def _add_group_sample(
        self, now: float, stream: str, length: int, group: dict[str, Any]
    ) -> None:
        lag = group.get("lag")
        self._samples.append(
            (
                now,
                stream,
                str(group["name"]),
                length,
                None if lag is None else int(lag),
                int(group["pending"]),
            )
        )

    async def sampler(
        self, client: redis.asyncio.Redis, streams: Sequence[str], *, every: float = 0.5
    ) -> None:
        """Sample every ``every`` seconds until cancelled (run it as a task beside consumers).

        Connection errors skip a sample instead of ending the sampler, so a
        broker restart leaves a gap in the chart, not a dead task.
        """
        while True:
            with contextlib.suppress(redis.ConnectionError, redis.TimeoutError, OSError):
                await self.asample(client, streams)
            await asyncio.sleep(every)

    def lag_frame(self) -> pd.DataFrame:
        """Return one row per (sample, stream, group), columns :data:`LAG_COLUMNS`.

        ``lag`` is ``<NA>`` when the server cannot tell (entries were deleted).
        """
        frame = pd.DataFrame(list(self._samples), columns=list(LAG_COLUMNS))
        frame["time"] = pd.to_datetime(frame["time"].astype("float64"), unit="s", utc=True).astype(
            _UTC_NS
        )
        return frame.astype({"length": "int64", "lag": "Int64", "pending": "int64"})
