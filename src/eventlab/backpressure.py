"""Backpressure: producer rate limits, a lag-aware throttle, priority reads, retention loss.

A stream is a buffer, not a promise: a producer faster than its consumers
grows lag without bound, and a stream capped with ``MAXLEN`` then trims events
before slow groups read them. These tools slow the producer down instead, and
say so when events were lost::

    from eventlab import backpressure

    bucket = backpressure.TokenBucket(rate=500.0, burst=50)      # events/s
    throttle = backpressure.LagThrottle(aclient, "{lab:orders}", "billing", max_lag=1_000)
    for event in events:
        await bucket.acquire()
        await throttle.wait()              # blocks while billing is too far behind
        await streams.apublish(aclient, "{lab:orders}", event, maxlen=10_000)

    backpressure.lost_by_retention(client, "{lab:orders}", "billing").lost   # trimmed unread

Introduced in lesson 05.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
import redis
import redis.asyncio

from eventlab.envelope import Event
from eventlab.streams import _xadd_args

__all__ = [
    "RETENTION_COLUMNS",
    "GroupLoad",
    "LagThrottle",
    "RetentionLoss",
    "TokenBucket",
    "alost_by_retention",
    "apublish_throttled",
    "group_load",
    "lost_by_retention",
    "priority_read",
    "retention_frame",
]

RETENTION_COLUMNS = (
    "stream",
    "group",
    "lost",
    "unread",
    "last_delivered_id",
    "first_entry_id",
)
"""Columns of :func:`retention_frame`, in order."""

_EPSILON = 1e-9


class TokenBucket:
    """A token bucket: at most ``rate`` events per second on average, bursts up to ``burst``.

    Introduced in lesson 05.
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Create a full bucket.

        Args:
            rate: Tokens (events) added per second.
            burst: Bucket size: events allowed back to back (default: ``rate``, at least 1).
            clock: Seconds, monotonic; tests pass a fake one.
        """
        if rate <= 0:
            raise ValueError("rate must be positive (events per second)")
        self.rate = float(rate)
        self.burst = float(burst if burst is not None else max(1.0, rate))
        if self.burst < 1:
            raise ValueError("burst must allow at least one event")
        self._clock = clock
        self._tokens = self.burst
        self._stamp = clock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    @property
    def tokens(self) -> float:
        """Tokens available now."""
        self._refill()
        return self._tokens

    def try_acquire(self, n: float = 1.0) -> bool:
        """Take ``n`` tokens if available now; return whether it did."""
        self._refill()
        if self._tokens >= n - _EPSILON:  # clock arithmetic in floats is a hair short
            self._tokens -= n
            return True
        return False

    def reserve(self, n: float = 1.0) -> float:
        """Take ``n`` tokens, into debt if needed; return the seconds to wait before acting."""
        if n > self.burst:
            raise ValueError(f"cannot take {n} tokens from a bucket of {self.burst}")
        self._refill()
        self._tokens -= n
        return 0.0 if self._tokens >= -_EPSILON else -self._tokens / self.rate

    async def acquire(self, n: float = 1.0) -> float:
        """Wait until ``n`` tokens are available and take them; return the seconds waited."""
        wait = self.reserve(n)
        if wait > 0:
            await asyncio.sleep(wait)
        return wait

    def acquire_sync(self, n: float = 1.0) -> float:
        """Blocking :meth:`acquire` for sync producers."""
        wait = self.reserve(n)
        if wait > 0:
            time.sleep(wait)
        return wait


@dataclass(frozen=True, slots=True)
class GroupLoad:
    """How far a group is behind.

    Attributes:
        stream: The stream key.
        group: The consumer group.
        lag: Entries not yet delivered to the group (``None`` if the server cannot tell).
        pending: Entries delivered but not acknowledged.
    """

    stream: str
    group: str
    lag: int | None
    pending: int


def _load_from(stream: str, group: str, groups: Iterable[Mapping[str, Any]]) -> GroupLoad:
    for info in groups:
        if info["name"] == group:
            lag = info.get("lag")
            return GroupLoad(stream, group, None if lag is None else int(lag), int(info["pending"]))
    raise LookupError(f"no consumer group {group!r} on {stream}")


def group_load(client: redis.Redis, stream: str, group: str) -> GroupLoad:
    """Return the lag and pending count of ``group`` on ``stream`` (``XINFO GROUPS``)."""
    groups: Any = client.xinfo_groups(stream)
    return _load_from(stream, group, groups)


class LagThrottle:
    """Hold a producer back while a consumer group's lag or pending count is over a bound.

    Introduced in lesson 05.
    """

    def __init__(
        self,
        client: redis.asyncio.Redis,
        stream: str,
        group: str,
        *,
        max_lag: int,
        max_pending: int | None = None,
        poll: float = 0.05,
        check_every: float = 0.05,
    ) -> None:
        """Watch ``group`` on ``stream``.

        Args:
            client: An asyncio client.
            stream: The stream key.
            group: The group whose progress bounds the producer.
            max_lag: Undelivered entries allowed before the producer waits.
            max_pending: Unacknowledged entries allowed (default: no bound).
            poll: Seconds between checks while waiting.
            check_every: Seconds a "below the bound" answer is trusted, so a fast
                producer does not ask the server before every event.
        """
        if max_lag < 0 or (max_pending is not None and max_pending < 0):
            raise ValueError("bounds are counts of entries, >= 0")
        self.client = client
        self.stream = stream
        self.group = group
        self.max_lag = max_lag
        self.max_pending = max_pending
        self.poll = poll
        self.check_every = check_every
        self.waited = 0.0
        """Total seconds producers spent waiting here."""
        self._ok_until = 0.0

    async def load(self) -> GroupLoad:
        """Return the group's lag and pending count now."""
        groups: Any = await self.client.xinfo_groups(self.stream)
        return _load_from(self.stream, self.group, groups)

    def over(self, load: GroupLoad) -> bool:
        """Whether ``load`` is over a bound (an unknown lag counts as over: be careful)."""
        if load.lag is None or load.lag > self.max_lag:
            return True
        return self.max_pending is not None and load.pending > self.max_pending

    async def wait(self, *, timeout: float | None = None) -> float:  # noqa: ASYNC109 - seconds
        """Wait until the group is within its bounds; return the seconds waited.

        Raises:
            TimeoutError: Still over a bound after ``timeout`` seconds.
        """
        now = time.monotonic()
        if now < self._ok_until:
            return 0.0
        started = now
        while self.over(await self.load()):
            if timeout is not None and time.monotonic() - started > timeout:
                raise TimeoutError(
                    f"{self.group} on {self.stream} stayed over max_lag={self.max_lag}"
                    f"/max_pending={self.max_pending} for {timeout:.1f} s"
                )
            await asyncio.sleep(self.poll)
        now = time.monotonic()
        self._ok_until = now + self.check_every
        self.waited += now - started
        return now - started


async def apublish_throttled(
    client: redis.asyncio.Redis,
    stream: str,
    events: Iterable[Event],
    *,
    bucket: TokenBucket | None = None,
    throttle: LagThrottle | None = None,
    maxlen: int | None = None,
) -> list[str]:
    """Publish events one by one, each after the bucket and the throttle allow it.

    Returns:
        The entry ids, in order.
    """
    extra = _xadd_args(maxlen, approximate=True)
    ids: list[str] = []
    for event in events:
        if bucket is not None:
            await bucket.acquire()
        if throttle is not None:
            await throttle.wait()
        ids.append(str(await client.xadd(stream, event.to_fields(), **extra)))  # type: ignore[arg-type]
    return ids


async def priority_read(
    client: redis.asyncio.Redis,
    *,
    group: str,
    consumer: str,
    streams: Sequence[str],
    count: int = 100,
    block: float | None = None,
) -> tuple[str, list[tuple[str, dict[str, str]]]] | None:
    """Read new entries from the first stream (in priority order) that has any.

    A lower-priority stream is read only when every higher one has nothing new,
    so urgent events (``{lab:payments-high}``) overtake a backlog of routine
    ones. Each stream needs ``group`` already.

    Args:
        client: An asyncio client.
        group: The consumer group (the same name on every stream).
        consumer: This consumer's name.
        streams: Stream keys, highest priority first.
        count: Entries per read.
        block: Seconds to wait for an entry on any stream when all are empty.

    Returns:
        ``(stream, [(entry id, fields), ...])``, or ``None`` if nothing arrived.
    """
    for stream in streams:
        reply: Any = await client.xreadgroup(group, consumer, {stream: ">"}, count=count)
        if reply and reply[0][1]:
            return str(reply[0][0]), [(str(i), dict(f)) for i, f in reply[0][1]]
    if block is None:
        return None
    # everything is empty: wait on all of them, then serve by priority again
    reply = await client.xreadgroup(
        group, consumer, dict.fromkeys(streams, ">"), count=count, block=max(1, int(block * 1000))
    )
    if not reply:
        return None
    by_stream = {str(name): rows for name, rows in reply}
    for stream in streams:
        if by_stream.get(stream):
            return stream, [(str(i), dict(f)) for i, f in by_stream[stream]]
    return None


@dataclass(frozen=True, slots=True)
class RetentionLoss:
    """Entries a group never read because ``MAXLEN`` (or ``XDEL``) removed them first.

    Attributes:
        stream: The stream key.
        group: The consumer group.
        lost: Entries added after the group's position and gone before it read them;
            ``None`` when the server cannot tell (the group never read and was
            created without ``ENTRIESREAD``).
        unread: Entries still in the stream that the group has not read yet.
        last_delivered_id: The group's position.
        first_entry_id: The oldest entry still in the stream (``None`` if empty).
    """

    stream: str
    group: str
    lost: int | None
    unread: int
    last_delivered_id: str
    first_entry_id: str | None


def _id(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def _loss(
    stream: str, group: Mapping[str, Any], info: Mapping[str, Any], unread: int
) -> RetentionLoss:
    first = info.get("first-entry")
    first_id = str(first[0]) if first else None
    entries_read = group.get("entries-read")
    lost: int | None = None
    if entries_read is not None:
        lost = max(0, int(info["entries-added"]) - int(entries_read) - unread)
    return RetentionLoss(
        stream=stream,
        group=str(group["name"]),
        lost=lost,
        unread=unread,
        last_delivered_id=str(group["last-delivered-id"]),
        first_entry_id=first_id,
    )


def _unread_needs_count(group: Mapping[str, Any], info: Mapping[str, Any]) -> bool:
    first: Any = info.get("first-entry")
    return bool(first) and _id(str(first[0])) <= _id(str(group["last-delivered-id"]))


def lost_by_retention(client: redis.Redis, stream: str, group: str) -> RetentionLoss:
    """Report entries of ``stream`` that were trimmed before ``group`` read them.

    Run it when a consumer comes back after being down (the reliable consumer
    does, and logs a warning): once the group reads past the gap, the loss can
    no longer be counted.

    Raises:
        LookupError: No such group.

    Introduced in lesson 05.
    """
    info: Any = client.xinfo_stream(stream)
    groups: Any = client.xinfo_groups(stream)
    found = next((g for g in groups if g["name"] == group), None)
    if found is None:
        raise LookupError(f"no consumer group {group!r} on {stream}")
    unread = int(info["length"])
    if _unread_needs_count(found, info):
        unread = sum(
            len(page) for page in _pages(client, stream, "(" + str(found["last-delivered-id"]))
        )
    return _loss(stream, found, info, unread)


def _pages(client: redis.Redis, stream: str, start: str) -> Iterable[list[Any]]:
    cursor = start
    while True:
        rows: Any = client.xrange(stream, min=cursor, max="+", count=1000)
        yield rows
        if len(rows) < 1000:  # noqa: PLR2004 - the page size above
            return
        cursor = "(" + str(rows[-1][0])


async def alost_by_retention(client: redis.asyncio.Redis, stream: str, group: str) -> RetentionLoss:
    """Asyncio :func:`lost_by_retention`."""
    info: Any = await client.xinfo_stream(stream)
    groups: Any = await client.xinfo_groups(stream)
    found = next((g for g in groups if g["name"] == group), None)
    if found is None:
        raise LookupError(f"no consumer group {group!r} on {stream}")
    unread = int(info["length"])
    if _unread_needs_count(found, info):
        unread = 0
        cursor = "(" + str(found["last-delivered-id"])
        while True:
            rows: Any = await client.xrange(stream, min=cursor, max="+", count=1000)
            unread += len(rows)
            if len(rows) < 1000:  # noqa: PLR2004 - the page size
                break
            cursor = "(" + str(rows[-1][0])
    return _loss(stream, found, info, unread)


def retention_frame(client: redis.Redis, streams: Sequence[str]) -> pd.DataFrame:
    """Return :func:`lost_by_retention` for every group on ``streams``, one row each."""
    rows = []
    for stream in streams:
        try:
            groups: Any = client.xinfo_groups(stream)
        except redis.ResponseError:
            continue
        for group in groups:
            loss = lost_by_retention(client, stream, str(group["name"]))
            rows.append([getattr(loss, name) for name in RETENTION_COLUMNS])
    frame = pd.DataFrame(rows, columns=list(RETENTION_COLUMNS))
    return frame.astype({"lost": "Int64", "unread": "int64"})
