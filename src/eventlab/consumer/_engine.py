"""The reliable consumer runtime: ack after effect, retries, reclaim, dead letters, idempotency.

faststream's Redis subscriber leaves the hard parts out (field-notes.md): its
``nack()`` does nothing, a restarted consumer never re-reads its pending
entries, there are no retries and no dead letters, and it handles one message
per call (~100x slower than a batched loop). :class:`Reliable` adds those to a
faststream service while keeping the handler per event::

    from faststream import FastStream
    from faststream.redis import RedisBroker, StreamSub
    from eventlab.consumer import Effects, Reliable
    from eventlab.envelope import Event

    broker = RedisBroker(url, logger=None)
    app = FastStream(broker, logger=None)
    reliable = Reliable(broker, app=app)  # starts and stops with the app

    @reliable.subscriber(
        StreamSub("lab:{orders}", group="billing", max_records=100),
        start="0",             # explicit: "0" the whole history, "$" only new events
        min_idle=5.0,          # reclaim entries a crashed consumer held for 5 s
        max_deliveries=5,      # then dead-letter to lab:{orders}:dlq
    )
    async def bill(event: Event, effects: Effects) -> None:
        # Redis writes recorded here are applied atomically with the dedupe
        # mark and the XACK: exactly one effect per event id.
        effects.hincrby("lab:{orders}:billed", event.data["customer"], event.data["total"])

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
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import inspect
import json
import logging
import os
import random
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Self

import pandas as pd
import redis
import redis.asyncio
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.client import NEVER_DECODE
from redis.crc import key_slot

from eventlab import _lua
from eventlab._errors import EventlabError
from eventlab.backpressure import alost_by_retention
from eventlab.envelope import EnvelopeError, Event
from eventlab.metrics import Metrics
from eventlab.streams import dlq_key

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
    "aredrive",
    "dead_letters",
    "dead_letters_frame",
    "redrive",
    "register_cli",
    "seen_key",
]

logger = logging.getLogger("eventlab.consumer")

DEDUPE_MAX = 200_000
"""Default bound of a group's dedupe store (event ids); ~27 MB of broker memory at ~134 B each."""

DLQ_MAXLEN = 10_000
"""Default bound (``MAXLEN ~``) of a ``<stream>:dlq`` stream; older dead letters are trimmed."""

DLQ_FIELDS = _lua.DLQ_FIELDS
"""Fields a dead letter adds to the event's own: reason, error type, attempts, original id, …"""

HealthState = Literal[
    "starting", "running", "reconnecting", "group-missing", "out-of-memory", "failed", "stopped"
]
"""Where a subscription is.

``group-missing``: the broker lost the group (data loss); ``out-of-memory``: the
broker is at its ``maxmemory`` limit and refuses commits (the batch stays pending
and is committed once memory is freed); ``failed``: an unexpected error stopped it
(logged with its traceback; other consumers reclaim its entries).
"""

Handler = Callable[..., Awaitable[Any] | Any]
_WITH_EFFECTS = 2  # handle(event, effects)
# the commit plan travels as one JSON string (cjson in the script): ensure_ascii=False
# keeps text as UTF-8 bytes, which Lua passes through untouched
_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
_CONNECTION_ERRORS = (redis.ConnectionError, redis.TimeoutError, ConnectionError, OSError)
_OOM_RETRY = 0.5  # seconds between commits the broker refused for lack of memory


class _Undecodable(dict[str, str]):
    """An entry's fields that are not all UTF-8: shown with escapes, dead-lettered raw.

    The dead-letter script copies the entry's bytes from the stream itself, so
    the dead letter keeps them exactly; this text is only for metrics and logs.
    """

    __slots__ = ("problem",)

    def __init__(self, fields: Mapping[str, str], problem: str) -> None:
        super().__init__(fields)
        self.problem = problem


def _text(raw: Any) -> str:
    return raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else str(raw)


def _decode_fields(raw: Any) -> Mapping[str, str]:
    """Decode a raw ``{name: value}`` mapping or flat ``[name, value, …]`` list.

    Returns an :class:`_Undecodable` (escaped text plus the problem) when a name or
    value is not UTF-8, so one bad entry cannot stop the batch around it.
    """
    pairs = (
        list(raw.items())
        if isinstance(raw, Mapping)
        else list(zip(raw[::2], raw[1::2], strict=True))
    )
    out: dict[str, str] = {}
    bad: list[str] = []
    for name, value in pairs:
        try:
            key = name.decode() if isinstance(name, bytes) else str(name)
        except UnicodeDecodeError as exc:
            key = _text(name)
            bad.append(f"field name {key!r} is not UTF-8 ({exc.reason} at byte {exc.start})")
        try:
            out[key] = value.decode() if isinstance(value, bytes) else str(value)
        except UnicodeDecodeError as exc:
            out[key] = _text(value)
            bad.append(f"{key}: not UTF-8 ({exc.reason} at byte {exc.start})")
    return _Undecodable(out, "; ".join(bad)) if bad else out


class _Script:
    """A Lua script run with replies left as bytes (``EVALSHA``, loaded on ``NOSCRIPT``).

    Entries come back from the scripts with their fields: a client that decodes
    replies would fail on the whole reply at one field that is not UTF-8.
    """

    __slots__ = ("sha", "text")

    def __init__(self, text: str) -> None:
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()  # noqa: S324 - the server's script id

    async def __call__(
        self, client: redis.asyncio.Redis, keys: Sequence[Any], args: Sequence[Any]
    ) -> Any:
        command = ("EVALSHA", self.sha, len(keys), *keys, *args)
        try:
            return await client.execute_command(*command, **{NEVER_DECODE: []})  # type: ignore[no-untyped-call]
        except redis.exceptions.NoScriptError:
            await client.script_load(self.text)
            return await client.execute_command(*command, **{NEVER_DECODE: []})  # type: ignore[no-untyped-call]

    def sync(self, client: redis.Redis, keys: Sequence[Any], args: Sequence[Any]) -> Any:
        """Run it on a sync client."""
        command = ("EVALSHA", self.sha, len(keys), *keys, *args)
        try:
            return client.execute_command(*command, **{NEVER_DECODE: []})  # type: ignore[no-untyped-call]
        except redis.exceptions.NoScriptError:
            client.script_load(self.text)
            return client.execute_command(*command, **{NEVER_DECODE: []})  # type: ignore[no-untyped-call]


_COMMIT = _Script(_lua.COMMIT)
_RECLAIM = _Script(_lua.RECLAIM)
_REDRIVE = _Script(_lua.REDRIVE)


def _is_oom(exc: redis.ResponseError) -> bool:
    return isinstance(exc, redis.exceptions.OutOfMemoryError) or str(exc).startswith("OOM")


def _out_of_memory(exc: redis.ResponseError, what: str) -> EventlabError:
    return EventlabError(
        f"the broker refused to {what}: it is at its maxmemory limit ({exc})",
        fix="free memory (trim streams, drain or trim dead letters) or raise maxmemory "
        "(CONFIG SET maxmemory), then try again",
    )


class PermanentError(Exception):
    """Raise from a handler for an event that can never succeed: it is dead-lettered at once.

    Introduced in lesson 04.
    """


class ConsumerError(EventlabError):
    """A consumer was declared wrongly (bad option or handler)."""


def seen_key(stream: str, group: str) -> str:
    """Return the dedupe store of ``group`` on ``stream``: ``lab:{orders}:seen:billing``.

    It is a sorted set of event ids scored by the time (ms) they were processed;
    it shares the stream's hash slot.
    """
    return f"{stream}:seen:{group}"


@dataclass(frozen=True, slots=True)
class Backoff:
    """Exponential backoff with jitter: ``initial * multiplier**(n-1)``, capped, ± jitter.

    Attributes:
        initial: Delay before the second try, in seconds.
        maximum: Upper bound of any delay, in seconds.
        multiplier: Growth per try.
        jitter: Fraction of the delay drawn at random (0.5 → 50-100 % of it), so
            consumers that failed together do not retry together.
    """

    initial: float = 0.05
    maximum: float = 2.0
    multiplier: float = 2.0
    jitter: float = 0.5

    def delay(self, retry: int, rng: random.Random) -> float:
        """Return the delay in seconds before retry number ``retry`` (1-based)."""
        base = min(self.maximum, self.initial * self.multiplier ** max(0, retry - 1))
        return base * (1.0 - self.jitter * rng.random())


@dataclass(frozen=True, slots=True)
class Health:
    """A snapshot of one subscription.

    Attributes:
        stream: The stream key.
        group: The consumer group.
        consumer: This consumer's name in the group.
        state: See :data:`HealthState`.
        reason: Why it is not ``running`` (the last error), or ``""``.
        since: When the state began (``time.time()`` seconds).
        ok: Events whose effects were applied.
        retried: Handler failures that will be retried.
        dead: Events dead-lettered.
        duplicates: Events skipped as already processed.
        reclaimed: Entries taken over from idle consumers.
        lost: Entries trimmed from the stream before this group handled them: unread
            ones counted when the consumer starts, pending ones when reclaimed.
    """

    stream: str
    group: str
    consumer: str
    state: HealthState
    reason: str
    since: float
    ok: int
    retried: int
    dead: int
    duplicates: int
    reclaimed: int
    lost: int


def _hash_tag(key: str) -> str | None:
    """The part of ``key`` Redis Cluster hashes: the first non-empty ``{…}``, else ``None``."""
    start = key.find("{")
    if start < 0:
        return None
    end = key.find("}", start + 1)
    return key[start + 1 : end] if end > start + 1 else None


@functools.lru_cache(maxsize=4096)
def _slot(key: str) -> int:
    """The key's Redis Cluster hash slot (CRC16 of its hash tag, as the server computes it)."""
    return int(key_slot(key.encode()))


class Effects:
    """Redis writes a handler records, applied atomically with the dedupe mark and XACK.

    Nothing is written while the handler runs: if it raises, its effects are
    dropped. After it returns, one Lua call per batch applies each event's
    effects, marks the event id processed and acknowledges the entry — or,
    if the id was already processed, does none of it twice.

    Every key must share the stream's Redis Cluster hash slot (its ``{hash tag}``:
    ``lab:{orders}:billed`` for ``lab:{orders}``), because one Lua call writes them
    with the stream's own keys; a key in another slot raises :class:`ConsumerError`
    when recorded (the event is dead-lettered with that reason). A subscription
    declared with ``cluster_safe=False`` (one broker only) lifts the check.

    Introduced in lesson 03.
    """

    __slots__ = ("_slot", "_stream", "ops")

    def __init__(self, *, stream: str | None = None, cluster_safe: bool = True) -> None:
        """Start with no effects.

        Args:
            stream: The stream the event came from; with ``cluster_safe``, every key
                must be in its hash slot. ``None`` checks nothing.
            cluster_safe: Refuse keys in another hash slot than the stream's.
        """
        self.ops: list[tuple[str, str, tuple[str, ...]]] = []
        self._stream = stream
        self._slot = (
            _slot(stream) if stream is not None and cluster_safe and _hash_tag(stream) else None
        )

    def _key(self, key: str) -> str:
        if self._slot is not None and _slot(key) != self._slot:
            stream = self._stream
            raise ConsumerError(
                f"effect key {key!r} is in Redis Cluster hash slot {_slot(key)}, the stream "
                f"{stream!r} in slot {self._slot}: one Lua call cannot write both on a cluster",
                fix=f"name the key inside the stream's hash tag ({stream}:<name>), or declare "
                "the subscriber with cluster_safe=False (one broker only)",
            )
        return key

    def __len__(self) -> int:
        """Return the number of recorded writes."""
        return len(self.ops)

    def hincrby(self, key: str, field: str, amount: int = 1) -> None:
        """``HINCRBY key field amount``."""
        self.ops.append(("hincrby", self._key(key), (field, str(int(amount)))))

    def incrby(self, key: str, amount: int = 1) -> None:
        """``INCRBY key amount``."""
        self.ops.append(("incrby", self._key(key), (str(int(amount)),)))

    def hset(self, key: str, mapping: Mapping[str, Any]) -> None:
        """``HSET key field value …`` (values as text)."""
        if not mapping:
            raise ValueError("hset needs at least one field")
        args: list[str] = []
        for name, value in mapping.items():
            args.extend((str(name), str(value)))
        self.ops.append(("hset", self._key(key), tuple(args)))

    def set(self, key: str, value: Any, *, ttl: float | None = None) -> None:
        """``SET key value`` (``ttl`` in seconds, optional)."""
        px = "0" if ttl is None else str(max(1, int(ttl * 1000)))
        self.ops.append(("set", self._key(key), (str(value), px)))

    def sadd(self, key: str, *members: Any) -> None:
        """``SADD key member …``."""
        if not members:
            raise ValueError("sadd needs at least one member")
        self.ops.append(("sadd", self._key(key), tuple(str(m) for m in members)))

    def delete(self, key: str) -> None:
        """``DEL key``."""
        self.ops.append(("del", self._key(key), ()))

    def xadd(self, stream: str, fields: Mapping[str, Any], *, maxlen: int | None = None) -> None:
        """``XADD stream [MAXLEN ~ n] * field value …``."""
        if not fields:
            raise ValueError("xadd needs at least one field")
        args = [str(maxlen or 0)]
        for name, value in fields.items():
            args.extend((str(name), str(value)))
        self.ops.append(("xadd", self._key(stream), tuple(args)))

    def publish(self, stream: str, event: Event, *, maxlen: int | None = None) -> None:
        """Append ``event`` to ``stream`` in the same atomic step (an outbox without a table)."""
        self.xadd(stream, event.to_fields(), maxlen=maxlen)

    def guard_version(self, key: str, version: int, *, field: str = "version") -> None:
        """Apply this event's later effects only if ``version`` is newer than the stored one.

        Reads ``HGET key field``; if it is ``>= version`` the event counts as a
        duplicate (stale) and none of the effects recorded after this call are
        applied; otherwise the field is set to ``version``. Per-aggregate version
        checks keep a projection right even without the dedupe store.
        """
        self.ops.append(("guard", self._key(key), (field, str(int(version)))))


@dataclass(frozen=True, slots=True)
class DeadLetter:
    r"""One entry of ``<stream>:dlq``.

    Attributes:
        entry_id: Its id in the dead-letter stream (what :func:`redrive` takes).
        original_id: The entry id it had in the stream.
        event_id: The event's ``id`` field, if it had one.
        reason: Why it was dead-lettered, in words.
        error: The error type (``"EnvelopeError"``, ``"builtins.ValueError"``…).
        attempts: Handler attempts (or deliveries) it got.
        stream: The stream it came from.
        group: The group that gave up on it.
        consumer: The consumer that wrote it.
        fields: The original fields as text (bytes that are not UTF-8 shown as
            ``\xNN`` escapes).
        raw: The original fields exactly as stored (bytes), e.g. to inspect an
            entry another client wrote in another encoding.
    """

    entry_id: str
    original_id: str
    event_id: str | None
    reason: str
    error: str
    attempts: int
    stream: str
    group: str
    consumer: str
    fields: dict[str, str]
    raw: dict[bytes, bytes] = field(default_factory=dict, repr=False, compare=False)


# -- the runtime ----------------------------------------------------------------------


@dataclass(slots=True)
class _Plan:
    """One batch after the handlers ran: what the commit script must do per entry."""

    entries: list[list[Any]] = field(default_factory=list)
    keys: dict[str, int] = field(default_factory=dict)
    rows: list[tuple[Any, ...]] = field(default_factory=list)

    def key(self, name: str) -> int:
        index = self.keys.get(name)
        if index is None:
            index = self.keys[name] = len(self.keys) + 4  # KEYS[1..3] are fixed
        return index


_Entry = tuple[str, Mapping[str, str], int]  # entry id, fields, delivery count


class Subscription:
    """One handler on one (stream, group): a reader and a reclaimer task.

    Created by :meth:`Reliable.subscriber`; read :attr:`health` to watch it.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        stream: str,
        group: str,
        consumer: str,
        start: str,
        batch: int,
        block: float,
        min_idle: float,
        reclaim_every: float | None,
        attempts: int,
        backoff: Backoff,
        retry_timeout: float,
        max_deliveries: int,
        permanent: tuple[type[BaseException], ...],
        dedupe: bool,
        dedupe_window: float,
        recreate_group: bool,
        dedupe_max: int | None = DEDUPE_MAX,
        dlq_maxlen: int | None,
        seed: int | None,
        metrics: Metrics | None,
        validate: Callable[[Event], Event | None] | None = None,
        cluster_safe: bool = True,
    ) -> None:
        """Store the options; :meth:`Reliable.subscriber` checks them."""
        self.handler = handler
        self.cluster_safe = cluster_safe
        self.validate = validate
        self.stream = stream
        self.group = group
        self.consumer = consumer
        self.start = start
        self.batch = batch
        self.block = block
        self.min_idle = min_idle
        self.reclaim_every = (
            reclaim_every if reclaim_every is not None else min(1.0, max(0.05, min_idle / 4))
        )
        self.attempts = attempts
        self.backoff = backoff
        self.retry_timeout = retry_timeout
        self.max_deliveries = max_deliveries
        self.permanent = permanent
        self.dedupe = dedupe
        self.dedupe_window = dedupe_window
        self.dedupe_max = dedupe_max
        self.recreate_group = recreate_group
        self.dlq_maxlen = dlq_maxlen
        self.metrics = metrics
        self.dlq = dlq_key(stream)
        self.seen = seen_key(stream, group)
        self._rng = random.Random(seed)  # noqa: S311 - jitter, not secrets
        self._pass_effects = _wants_effects(handler)
        self._is_async = inspect.iscoroutinefunction(handler)
        self._queue: asyncio.Queue[list[_Entry]] = asyncio.Queue(maxsize=2)
        self._backlog: list[list[_Entry]] = []  # own pending entries re-read at start
        self._held: set[str] = set()  # entry ids read or claimed and not yet committed
        self._stopping = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._state: HealthState = "stopped"
        self._reason = ""
        self._since = time.time()
        self._counts = dict.fromkeys(
            ("ok", "retried", "dead", "duplicates", "reclaimed", "lost"), 0
        )
        self._client: redis.asyncio.Redis | None = None

    def __repr__(self) -> str:
        """Show the stream, group, consumer and state."""
        return f"<Subscription {self.stream} group={self.group} {self.consumer} {self._state}>"

    @property
    def health(self) -> Health:
        """A snapshot of the state and counters."""
        return Health(
            stream=self.stream,
            group=self.group,
            consumer=self.consumer,
            state=self._state,
            reason=self._reason,
            since=self._since,
            **self._counts,
        )

    def _set_state(self, state: HealthState, reason: str = "") -> None:
        if state != self._state or reason != self._reason:
            self._state, self._reason, self._since = state, reason, time.time()

    # -- lifecycle --------------------------------------------------------------

    async def _start(self, client: redis.asyncio.Redis) -> None:
        self._client = client
        self._stopping.clear()
        # a previous run cut short (stop timeout) may have left ids behind: the
        # server still has those entries pending, and the reclaimer must see them
        self._held.clear()
        self._backlog = []
        self._queue = asyncio.Queue(maxsize=2)
        self._set_state("starting")
        await self._ensure_group(create=True)
        self._tasks = [
            asyncio.create_task(self._read_loop(), name=f"eventlab-read-{self.stream}"),
            asyncio.create_task(self._reclaim_loop(), name=f"eventlab-reclaim-{self.stream}"),
        ]

    async def _stop(self, *, timeout: float) -> None:  # noqa: ASYNC109 - seconds, documented
        self._stopping.set()
        if not self._tasks:
            return
        reader, reclaimer = self._tasks
        # not cancelled: a reclaim call in flight has already claimed its entries (the
        # server counted a delivery); the reclaimer sees _stopping and hands them back
        try:
            await asyncio.wait_for(reclaimer, timeout)
        except (TimeoutError, asyncio.CancelledError):
            logger.warning("%s: reclaimer not finished in %.1f s", self, timeout)
        except _CONNECTION_ERRORS as exc:
            logger.warning("%s: reclaimer stopped with the broker unreachable: %s", self, exc)
        try:
            await asyncio.wait_for(reader, timeout)
        except (TimeoutError, asyncio.CancelledError):
            logger.warning("%s: in-flight batch not finished in %.1f s", self, timeout)
        except _CONNECTION_ERRORS as exc:
            logger.warning("%s: stopped with the broker unreachable: %s", self, exc)
        await self._release_queued()
        self._tasks = []
        if self._state != "failed":
            self._set_state("stopped")

    async def _release_queued(self) -> None:
        """Hand reclaimed-but-unhandled entries back at once."""
        entries: list[_Entry] = [e for chunk in self._backlog for e in chunk]
        self._backlog.clear()
        while not self._queue.empty():
            entries.extend(self._queue.get_nowait())
        await self._release(entries)

    async def _release(self, entries: Sequence[_Entry]) -> None:
        """Give claimed entries back unhandled: idle at ``min_idle``, delivery count as before.

        Another consumer's reclaimer takes them on its next scan, and the claim that
        never reached a handler does not count as a delivery (``RETRYCOUNT``), so it
        brings no entry nearer to ``max_deliveries``.
        """
        self._held.difference_update(entry_id for entry_id, _, _ in entries)
        if not entries or self._client is None:
            return
        by_count: dict[int, list[str]] = {}
        for entry_id, _, delivery in entries:
            by_count.setdefault(max(0, delivery - 1), []).append(entry_id)
        idle = int(self.min_idle * 1000)
        with contextlib.suppress(redis.RedisError, *_CONNECTION_ERRORS):
            async with self._client.pipeline(transaction=False) as pipe:
                for count, ids in by_count.items():
                    pipe.xclaim(
                        self.stream,
                        self.group,
                        self.consumer,
                        0,
                        list[Any](ids),
                        idle=idle,
                        retrycount=count,
                        justid=True,
                    )
                await pipe.execute()

    async def _offer(self, entries: list[_Entry]) -> None:
        """Queue claimed entries for the reader, or release them if the subscription stops."""
        if self._stopping.is_set():
            await self._release(entries)
            return
        put = asyncio.ensure_future(self._queue.put(entries))
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({put, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not put.done():
                put.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await put
        if put.cancelled():  # the reader stopped taking batches: hand them back
            await self._release(entries)

    async def _ensure_group(self, *, create: bool) -> bool:
        assert self._client is not None
        position, entries_read = await self._group_position()
        try:
            await self._client.xgroup_create(
                self.stream, self.group, id=position, mkstream=True, entries_read=entries_read
            )
        except redis.ResponseError as exc:
            if _is_oom(exc):  # refused before the server looked: does the group exist?
                with contextlib.suppress(redis.ResponseError):
                    groups: Any = await self._client.xinfo_groups(self.stream)
                    if any(g["name"] == self.group for g in groups):
                        return False
                raise _out_of_memory(exc, f"create consumer group {self.group!r}") from None
            if "BUSYGROUP" not in str(exc):
                raise
            return False
        if not create:
            logger.error(
                "%s: consumer group %r was missing on %s and was recreated at %r "
                "(recreate_group=True): events the broker lost are gone",
                self,
                self.group,
                self.stream,
                self.start,
            )
        return True

    async def _group_position(self) -> tuple[str, int | None]:
        """The explicit start as an id plus ENTRIESREAD, so lag and retention loss are exact."""
        assert self._client is not None
        if self.start == "0":
            return "0", 0
        if self.start != "$":
            return self.start, None
        try:
            info: Any = await self._client.xinfo_stream(self.stream)
        except redis.ResponseError:  # no stream yet: "$" and "0" mean the same
            return "0", 0
        # one snapshot gives both, so the pair is consistent even while producers write
        return str(info["last-generated-id"]), int(info["entries-added"])

    async def _check_retention(self) -> None:
        """Say loudly if entries were trimmed before this group read them (consumer was down)."""
        assert self._client is not None
        try:
            loss = await alost_by_retention(self._client, self.stream, self.group)
        except (LookupError, redis.ResponseError):
            return  # the group or stream is gone: the reader's NOGROUP reports it
        if loss.lost:
            self._counts["lost"] += loss.lost
            logger.warning(
                "%s: %d entries of %s were trimmed (MAXLEN) before group %r read them: "
                "lost by retention",
                self,
                loss.lost,
                self.stream,
                self.group,
            )

    # -- reading ----------------------------------------------------------------

    async def _read_loop(self) -> None:
        try:
            await self._consume()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            logger.exception(
                "%s: stopped by an unexpected error; other consumers of the group will "
                "reclaim its pending entries after min_idle",
                self,
            )
            self._set_state("failed", f"{type(exc).__name__}: {exc}")
            self._stopping.set()  # the reclaimer stops too: nothing would handle its claims

    async def _consume(self) -> None:
        inflight: asyncio.Task[None] | None = None
        await self._guarded(self._check_retention)
        await self._guarded(self._recover_own)
        if self._state == "starting":
            self._set_state("running")
        try:
            while not self._stopping.is_set():
                if self._backlog:
                    batch = self._backlog.pop(0)
                elif not self._queue.empty():
                    batch = self._queue.get_nowait()
                else:
                    batch = await self._read()
                if not batch:
                    continue
                plan = await self._handle(batch, received=time.time())
                if inflight is not None:
                    await inflight
                inflight = asyncio.create_task(self._commit_until_done(plan))
        finally:
            if inflight is not None:
                await inflight

    async def _recover_own(self) -> None:
        """A restarted consumer with the same name re-reads its own pending entries first."""
        assert self._client is not None
        _, entries, deleted = await _RECLAIM(
            self._client,
            [self.stream],
            [self.group, self.consumer, 0, "-", self.batch * 10, "own", "[]"],
        )
        self._note_deleted([_text(d) for d in deleted])
        # kept aside, not queued: the reader itself would block on a full queue
        for start in range(0, len(entries), self.batch):
            chunk = _entries(entries[start : start + self.batch])
            self._held.update(entry_id for entry_id, _, _ in chunk)
            self._backlog.append(chunk)

    async def _read(self) -> list[_Entry]:
        assert self._client is not None
        try:
            # replies stay bytes: one entry that is not UTF-8 must not fail the batch
            reply: Any = await self._client.execute_command(  # type: ignore[no-untyped-call]
                "XREADGROUP", "GROUP", self.group, self.consumer,
                "COUNT", self.batch, "BLOCK", max(1, int(self.block * 1000)),
                "STREAMS", self.stream, ">",
                **{NEVER_DECODE: []},
            )  # fmt: skip
        except redis.ResponseError as exc:
            await self._on_response_error(exc)
            return []
        except _CONNECTION_ERRORS as exc:
            await self._on_disconnect(exc)
            return []
        if self._state not in {"running", "out-of-memory"}:
            self._set_state("running")
        if not reply:
            return []
        batch = [(_text(entry_id), _decode_fields(fields), 1) for entry_id, fields in reply[0][1]]
        self._held.update(entry_id for entry_id, _, _ in batch)
        return batch

    async def _on_disconnect(self, exc: BaseException) -> None:
        if self._state != "reconnecting":
            logger.warning("%s: broker unreachable (%s); reconnecting", self, exc)
        self._set_state("reconnecting", f"{type(exc).__name__}: {exc}")
        await self._pause(0.2)

    async def _on_response_error(self, exc: redis.ResponseError) -> None:
        if "NOGROUP" not in str(exc):
            raise exc
        if self._state != "group-missing":
            logger.error(
                "%s: consumer group %r is gone from %s (did the broker lose its data?); %s",
                self,
                self.group,
                self.stream,
                "recreating it"
                if self.recreate_group
                else "not recreating it (pass recreate_group=True to opt in)",
            )
        self._set_state("group-missing", str(exc))
        if self.recreate_group:
            with contextlib.suppress(redis.RedisError, *_CONNECTION_ERRORS):
                await self._ensure_group(create=False)
                self._set_state("running")
                return
        await self._pause(1.0)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    async def _guarded(self, step: Callable[[], Awaitable[None]]) -> None:
        """Run ``step`` until it succeeds, riding out disconnects and a missing group."""
        while not self._stopping.is_set():
            try:
                await step()
            except redis.ResponseError as exc:
                await self._on_response_error(exc)
            except _CONNECTION_ERRORS as exc:
                await self._on_disconnect(exc)
            else:
                return

    # -- reclaiming -------------------------------------------------------------

    async def _reclaim_loop(self) -> None:
        start = "-"
        min_idle_ms = max(1, int(self.min_idle * 1000))
        while not self._stopping.is_set():
            # the script skips entries this subscription still holds (queued or being
            # handled): claiming them would reset their idle time, hiding a slow
            # handler from the other consumers, and count a delivery that never was
            held = _dumps(sorted(self._held))
            assert self._client is not None
            try:
                raw_start, entries, deleted = await _RECLAIM(
                    self._client,
                    [self.stream],
                    [self.group, self.consumer, min_idle_ms, start, self.batch, "auto", held],
                )
            except (redis.ResponseError, *_CONNECTION_ERRORS):
                # the reader reports disconnects and a missing group; just wait
                start = "-"
                await self._pause(self.reclaim_every)
                continue
            start = _text(raw_start)
            self._note_deleted([_text(d) for d in deleted])
            # and what became held while the script ran is not handled twice either
            fresh = [e for e in _entries(entries) if e[0] not in self._held]
            if fresh:
                self._counts["reclaimed"] += len(fresh)
                self._held.update(entry_id for entry_id, _, _ in fresh)
                await self._offer(fresh)
            if start == "0-0":  # a full pass: rest, then start over
                start = "-"
                await self._pause(self.reclaim_every)

    def _note_deleted(self, deleted: Sequence[str]) -> None:
        if deleted:
            self._counts["lost"] += len(deleted)
            logger.warning(
                "%s: %d pending entries were trimmed from the stream before they were "
                "handled (lost by retention): %s",
                self,
                len(deleted),
                ", ".join(deleted[:5]),
            )

    # -- handling ---------------------------------------------------------------

    async def _handle(self, batch: list[_Entry], *, received: float) -> _Plan:
        plan = _Plan()
        for entry_id, fields, delivery in batch:
            if isinstance(fields, _Undecodable):
                self._dead_raw(plan, entry_id, fields, attempt=delivery, received=received)
                continue
            try:
                event = Event.from_fields(fields)
            except EnvelopeError as exc:
                self._dead(
                    plan,
                    entry_id,
                    fields=fields,
                    event=None,
                    attempt=delivery,
                    received=received,
                    exc=exc,
                    delivery=delivery,
                )
                continue
            if delivery > self.max_deliveries:
                reason = (
                    f"delivered {delivery} times without an ack (max_deliveries="
                    f"{self.max_deliveries}): a consumer crashed or stalled on it each time"
                )
                self._dead_reason(
                    plan,
                    entry_id,
                    event,
                    attempt=delivery,
                    received=received,
                    reason=reason,
                    error="Redelivery",
                )
                continue
            if self.validate is not None:
                try:
                    event = self.validate(event) or event
                except Exception as exc:  # noqa: BLE001 - any validation failure is permanent
                    self._dead_reason(
                        plan,
                        entry_id,
                        event,
                        attempt=delivery,
                        received=received,
                        reason=f"failed validation: {type(exc).__name__}: {exc}",
                        error=_error_name(type(exc)),
                    )
                    continue
            await self._run_handler(plan, entry_id, event, delivery, received)
        return plan

    async def _run_handler(
        self, plan: _Plan, entry_id: str, event: Event, delivery: int, received: float
    ) -> None:
        deadline = time.monotonic() + self.retry_timeout
        first = (delivery - 1) * self.attempts
        tried = 0
        while True:
            tried += 1
            effects = Effects(stream=self.stream, cluster_safe=self.cluster_safe)
            try:
                result = self.handler(event, effects) if self._pass_effects else self.handler(event)
                if self._is_async or inspect.isawaitable(result):
                    await result
            except Exception as exc:  # noqa: BLE001 - non-permanent errors are transient by contract
                permanent = isinstance(exc, self.permanent)
                if not permanent:
                    wait = self.backoff.delay(first + tried, self._rng)
                    if tried < self.attempts and time.monotonic() + wait < deadline:
                        self._row(event, received, first + tried, "retry")
                        self._counts["retried"] += 1
                        await asyncio.sleep(wait)
                        continue
                if permanent or delivery >= self.max_deliveries:
                    self._dead(
                        plan,
                        entry_id,
                        fields=None,
                        event=event,
                        attempt=first + tried,
                        received=received,
                        exc=exc,
                        delivery=delivery,
                    )
                    return
                # release for redelivery after a backoff: the reclaimer picks it up
                delay = self.backoff.delay(delivery, self._rng)
                idle = max(0, int((self.min_idle - delay) * 1000))
                plan.entries.append([entry_id, event.id, "retry", [str(idle)]])
                plan.rows.append(self._event_row(event, received, first + tried, "retry"))
                logger.info("%s: %s failed (%r), redelivery in %.2f s", self, entry_id, exc, delay)
                return
            else:
                ops = [[op, plan.key(key), args] for op, key, args in effects.ops]
                plan.entries.append([entry_id, event.id if self.dedupe else "", "ok", ops])
                plan.rows.append(self._event_row(event, received, first + tried, "ok"))
                return

    def _dead(
        self,
        plan: _Plan,
        entry_id: str,
        *,
        fields: Mapping[str, str] | None,
        event: Event | None,
        attempt: int,
        received: float,
        exc: BaseException,
        delivery: int,
    ) -> None:
        kind = type(exc)
        error = _error_name(kind)
        if isinstance(exc, EnvelopeError):
            reason = f"not a valid event: {'; '.join(f'{k}: {v}' for k, v in exc.problems.items())}"
        elif isinstance(exc, self.permanent):
            reason = f"permanent error: {kind.__name__}: {exc}"
        else:
            reason = (
                f"failed on all {delivery} deliveries (max_deliveries={self.max_deliveries}): "
                f"{kind.__name__}: {exc}"
            )
        if event is None:
            text = dict(fields or {})
            plan.entries.append([entry_id, "", "dead", [reason, error, str(attempt)]])
            plan.rows.append(
                (
                    text.get("id") or entry_id,
                    text.get("type"),
                    text.get("correlationid"),
                    text.get("causationid"),
                    text.get("source"),
                    self.stream,
                    self.group,
                    self.consumer,
                    None,
                    received,
                    0.0,
                    attempt,
                    "dead",
                )
            )
            return
        self._dead_reason(
            plan, entry_id, event, attempt=attempt, received=received, reason=reason, error=error
        )

    def _dead_raw(
        self, plan: _Plan, entry_id: str, fields: _Undecodable, *, attempt: int, received: float
    ) -> None:
        """Dead-letter an entry whose bytes are not UTF-8 (the script copies them raw)."""
        reason = f"not a valid event: not UTF-8: {fields.problem}"
        plan.entries.append([entry_id, "", "dead", [reason, "UnicodeDecodeError", str(attempt)]])
        plan.rows.append(
            (
                fields.get("id") or entry_id,
                fields.get("type"),
                fields.get("correlationid"),
                fields.get("causationid"),
                fields.get("source"),
                self.stream,
                self.group,
                self.consumer,
                None,
                received,
                0.0,
                attempt,
                "dead",
            )
        )

    def _dead_reason(
        self,
        plan: _Plan,
        entry_id: str,
        event: Event,
        *,
        attempt: int,
        received: float,
        reason: str,
        error: str,
    ) -> None:
        plan.entries.append([entry_id, event.id, "dead", [reason, error, str(attempt)]])
        plan.rows.append(self._event_row(event, received, attempt, "dead"))

    def _event_row(
        self, event: Event, received: float, attempt: int, outcome: str
    ) -> tuple[Any, ...]:
        return (
            event.id,
            event.type,
            event.correlationid,
            event.causationid,
            event.source,
            self.stream,
            self.group,
            self.consumer,
            event.time,
            received,
            0.0,
            attempt,
            outcome,
        )

    def _row(self, event: Event, received: float, attempt: int, outcome: str) -> None:
        if self.metrics is not None:
            row = list(self._event_row(event, received, attempt, outcome))
            row[10] = time.time()
            self.metrics.extend([tuple(row)])

    # -- committing -------------------------------------------------------------

    async def _commit_until_done(self, plan: _Plan) -> None:
        """Run the batch's Lua call; after a disconnect, run it again (it is idempotent)."""
        try:
            await self._commit_plan(plan)
        finally:
            self._held.difference_update(entry[0] for entry in plan.entries)

    async def _commit_plan(self, plan: _Plan) -> None:
        if not plan.entries:
            return
        keys = [self.stream, self.seen, self.dlq, *plan.keys]
        window = int(self.dedupe_window * 1000) if self.dedupe else 0
        packed = _dumps(plan.entries)
        while True:
            args = [
                self.group,
                self.consumer,
                int(time.time() * 1000),
                window,
                self.dlq_maxlen or 0,
                packed,
                self.dedupe_max or 0,
            ]
            assert self._client is not None
            try:
                raw = await _COMMIT(self._client, keys, args)
            except redis.ResponseError as exc:
                if _is_oom(exc):
                    # the script is declared without allow-oom: refused whole, nothing
                    # applied; the batch stays pending and is committed once there is room
                    await self._on_out_of_memory(exc)
                    if self._stopping.is_set():
                        logger.warning("%s: stopping with a batch uncommitted (redelivered)", self)
                        return
                    continue
                if "NOGROUP" in str(exc):
                    # the group and its pending list are gone: nothing left to ack
                    await self._on_response_error(exc)
                    return
                raise
            except _CONNECTION_ERRORS as exc:
                await self._on_disconnect(exc)
                if self._stopping.is_set() and self._state == "reconnecting":
                    logger.warning("%s: stopping with a batch uncommitted (redelivered)", self)
                    return
                continue
            if self._state == "out-of-memory":
                logger.warning("%s: the broker accepts commits again", self)
                self._set_state("running")
            self._account(plan, [_text(status) for status in raw])
            return

    async def _on_out_of_memory(self, exc: redis.ResponseError) -> None:
        if self._state != "out-of-memory":
            logger.error(
                "%s: %s; the batch stays pending and is committed when memory is freed",
                self,
                _out_of_memory(exc, "commit a batch"),
            )
        self._set_state("out-of-memory", str(exc))
        await self._pause(_OOM_RETRY)

    def _account(self, plan: _Plan, statuses: Sequence[str]) -> None:
        counts = self._counts
        handled = time.time()
        rows = []
        for row, status in zip(plan.rows, statuses, strict=True):
            if status == "ok":
                counts["ok"] += 1
                outcome = "ok"
            elif status in {"duplicate", "stale"}:
                counts["duplicates"] += 1
                outcome = "duplicate"
            elif status == "retry":
                counts["retried"] += 1
                outcome = "retry"
            else:  # dead, or an effect that failed in Redis (dead-lettered by the script)
                counts["dead"] += 1
                outcome = "dead"
                if status.startswith("error:"):
                    logger.error("%s: effect of %s failed: %s", self, row[0], status[6:])
            rows.append((*row[:10], handled, row[11], outcome))
        if self.metrics is not None:
            self.metrics.extend(rows)


def _error_name(kind: type[BaseException]) -> str:
    """Short for built-in and envelope errors, qualified for the rest (says where it came from)."""
    if kind.__module__ in {"builtins", "eventlab.envelope"}:
        return kind.__name__
    return f"{kind.__module__}.{kind.__qualname__}"


def _entries(raw: Sequence[Sequence[Any]]) -> list[_Entry]:
    """Turn the RECLAIM script's ``{id, count, {k, v, …}}`` rows (bytes) into entries."""
    return [(_text(entry_id), _decode_fields(flat), int(count)) for entry_id, count, flat in raw]


def _wants_effects(handler: Handler) -> bool:
    try:
        params = list(inspect.signature(handler).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in params
        if p.kind in {p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD} and p.default is p.empty
    ]
    if len(positional) not in {1, 2}:
        raise ConsumerError(
            f"handler {getattr(handler, '__name__', handler)!r} takes {len(positional)} arguments",
            fix="write `async def handle(event)` or `async def handle(event, effects)`",
        )
    return len(positional) == _WITH_EFFECTS


def _default_consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Reliable:
    """Reliable subscribers for a faststream ``RedisBroker`` (or a Redis URL).

    Declare handlers with :meth:`subscriber`; run them with the app
    (``Reliable(broker, app=app)``), with ``async with reliable:``, or with
    :meth:`run` in a service process.

    Introduced in lesson 03.
    """

    def __init__(
        self,
        broker: Any,
        *,
        app: Any = None,
        metrics: Metrics | None = None,
        consumer: str | None = None,
        stop_timeout: float = 10.0,
    ) -> None:
        """Bind to a broker.

        Args:
            broker: A faststream ``RedisBroker``, a ``redis://`` URL, or an
                ``eventlab.broker.Broker``.
            app: A ``FastStream`` app: the consumers then start after it and stop
                before it shuts down.
            metrics: Records every handled event (see :mod:`eventlab.metrics`).
            consumer: Default consumer name in each group (default ``host-pid``).
            stop_timeout: Seconds :meth:`stop` waits for in-flight batches.
        """
        self.broker = broker
        self.metrics = metrics
        self.consumer = consumer or _default_consumer()
        self.stop_timeout = stop_timeout
        self.subscriptions: list[Subscription] = []
        self._client: redis.asyncio.Redis | None = None
        self._running = False
        if app is not None:
            self.attach(app)

    def __repr__(self) -> str:
        """Show how many subscriptions and whether they run."""
        state = "running" if self._running else "stopped"
        return f"<Reliable {len(self.subscriptions)} subscriptions {state}>"

    def attach(self, app: Any) -> None:
        """Start with a ``FastStream`` app (after it connects) and stop before it shuts down."""

        # wrappers without parameters: faststream resolves hook parameters by injection
        async def start_reliable() -> None:
            await self.start()

        async def stop_reliable() -> None:
            await self.stop()

        app.after_startup(start_reliable)
        app.on_shutdown(stop_reliable)

    def subscriber(
        self,
        stream: Any,
        *,
        start: str,
        group: str | None = None,
        consumer: str | None = None,
        batch: int | None = None,
        block: float | None = None,
        min_idle: float = 30.0,
        reclaim_every: float | None = None,
        attempts: int = 3,
        backoff: Backoff | None = None,
        retry_timeout: float = 10.0,
        max_deliveries: int = 5,
        permanent: Sequence[type[BaseException]] = (),
        dedupe: bool = True,
        dedupe_window: float = 24 * 3600.0,
        dedupe_max: int | None = DEDUPE_MAX,
        recreate_group: bool = False,
        dlq_maxlen: int | None = DLQ_MAXLEN,
        seed: int | None = 0,
        validate: Callable[[Event], Event | None] | None = None,
        cluster_safe: bool = True,
    ) -> Callable[[Handler], Handler]:
        """Declare a reliable handler on a stream and group (a decorator).

        Args:
            stream: The stream key (``"lab:{orders}"``) or a faststream ``StreamSub``
                (its ``name``, ``group``, ``consumer``, ``max_records`` and
                ``polling_interval`` are used).
            start: Where a new group starts: ``"0"`` the whole history, ``"$"``
                only events added from now on. Always explicit.
            group: The consumer group (the owning service: ``"billing"``).
            consumer: This consumer's name in the group (default: the runtime's).
            batch: Entries per read (``XREADGROUP COUNT``); default 100.
            block: Seconds a read waits for new entries; default 0.2.
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
        """
        name, group, consumer, batch, block = _stream_options(stream, group, consumer, batch, block)
        if start not in {"0", "$"} and "-" not in start:
            raise ConsumerError(
                f"start={start!r} is not a group position",
                fix="use start='0' (whole history) or start='$' (only new events)",
            )
        _positive(batch=batch, block=block, min_idle=min_idle, attempts=attempts)
        _positive(max_deliveries=max_deliveries, dedupe_window=dedupe_window)
        if retry_timeout < 0:
            raise ConsumerError("retry_timeout is negative", fix="pass seconds >= 0")

        def decorate(handler: Handler) -> Handler:
            _wants_effects(handler)  # fail at declaration, not at the first event
            sub = Subscription(
                handler,
                stream=name,
                group=group,
                consumer=consumer or self.consumer,
                start=start,
                batch=batch,
                block=block,
                min_idle=min_idle,
                reclaim_every=reclaim_every,
                attempts=attempts,
                backoff=backoff or Backoff(),
                retry_timeout=retry_timeout,
                max_deliveries=max_deliveries,
                # a ConsumerError from a handler is a mistake in it (an effect key in
                # another hash slot): retrying cannot fix it, the dead letter says how
                permanent=(PermanentError, ConsumerError, *permanent),
                dedupe=dedupe,
                dedupe_window=dedupe_window,
                dedupe_max=dedupe_max,
                recreate_group=recreate_group,
                dlq_maxlen=dlq_maxlen,
                seed=seed,
                metrics=self.metrics,
                validate=validate,
                cluster_safe=cluster_safe,
            )
            if _hash_tag(name) is None:
                logger.warning(
                    "stream %r has no {hash tag}: its dead letters, dedupe store and "
                    "effect keys hash to different Redis Cluster slots, so %s runs on one "
                    "broker only; name it like 'lab:{orders}' (streams.stream_key)",
                    name,
                    getattr(handler, "__name__", "the handler"),
                )
            self.subscriptions.append(sub)
            if self._running:
                asyncio.get_running_loop().create_task(sub._start(self._connection()))  # noqa: SLF001
            return handler

        return decorate

    def health(self) -> dict[str, Health]:
        """Return ``{"<stream>/<group>": Health}`` for every subscription."""
        return {f"{s.stream}/{s.group}": s.health for s in self.subscriptions}

    def health_frame(self) -> pd.DataFrame:
        """Return :meth:`health` as a DataFrame, one row per subscription."""
        rows = [
            {name: getattr(h, name) for name in Health.__slots__} for h in self.health().values()
        ]
        return pd.DataFrame(rows)

    def _connection(self) -> redis.asyncio.Redis:
        if self._client is None:
            self._client = _client_for(
                self.broker, block=max((s.block for s in self.subscriptions), default=0.2)
            )
        return self._client

    async def start(self) -> None:
        """Create the groups (at their explicit start) and start readers and reclaimers."""
        if self._running:
            return
        client = self._connection()
        self._running = True
        try:
            for sub in self.subscriptions:
                await sub._start(client)  # noqa: SLF001 - the runtime owns its subscriptions
        except BaseException:
            await self.stop()
            raise

    async def stop(self, *, timeout: float | None = None) -> None:  # noqa: ASYNC109 - seconds
        """Stop reading, finish (commit) in-flight batches, release the rest, close."""
        wait = self.stop_timeout if timeout is None else timeout
        await asyncio.gather(*(s._stop(timeout=wait) for s in self.subscriptions))  # noqa: SLF001
        self._running = False
        if self._client is not None:
            with contextlib.suppress(*_CONNECTION_ERRORS):
                await self._client.aclose()
            self._client = None

    async def __aenter__(self) -> Self:
        """Start the subscriptions."""
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        """Stop the subscriptions gracefully."""
        await self.stop()

    async def run(self, *, until: asyncio.Event | None = None, ready: bool = True) -> None:
        """Run until SIGTERM/SIGINT (or ``until`` is set): the main of a service process.

        Args:
            until: Stop when this event is set.
            ready: Call :func:`eventlab.processes.signal_ready` once started.
        """
        done = until or asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, done.set)
        await self.start()
        if ready:
            from eventlab.processes import signal_ready  # noqa: PLC0415 - only services need it

            signal_ready()
        try:
            await done.wait()
        finally:
            await self.stop()

    async def drain(self, *, timeout: float = 30.0, poll: float = 0.05) -> bool:  # noqa: ASYNC109
        """Wait until every group has no lag, nothing pending, and every outcome is recorded.

        Returns:
            ``True`` if drained within ``timeout`` seconds.
        """
        client = self._connection()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await _drained(client, self.subscriptions):
                return True
            await asyncio.sleep(poll)
        return False


async def _drained(client: redis.asyncio.Redis, subs: Iterable[Subscription]) -> bool:
    for sub in subs:
        if sub._held or not sub._queue.empty() or sub._backlog:  # noqa: SLF001 - work in hand
            return False
        try:
            groups = await client.xinfo_groups(sub.stream)
        except (redis.ResponseError, *_CONNECTION_ERRORS):
            return False
        info = next((g for g in groups if g["name"] == sub.group), None)
        if info is None or int(info["pending"]) or (info.get("lag") not in (0, None)):
            return False
    return True


def _stream_options(
    stream: Any, group: str | None, consumer: str | None, batch: int | None, block: float | None
) -> tuple[str, str, str | None, int, float]:
    if isinstance(stream, str):
        name = stream
    else:  # a faststream StreamSub
        name = str(getattr(stream, "name", "") or "")
        group = group or getattr(stream, "group", None)
        consumer = consumer or getattr(stream, "consumer", None)
        batch = batch or getattr(stream, "max_records", None)
        interval = getattr(stream, "polling_interval", None)
        if block is None and interval:
            block = float(interval) / 1000.0
    if not name:
        raise ConsumerError("no stream given", fix="pass a key such as 'lab:{orders}'")
    if not group:
        raise ConsumerError(
            f"no consumer group for {name}",
            fix="pass group='<service name>' (groups are named after the owning service)",
        )
    return name, group, consumer, batch or 100, 0.2 if block is None else block


def _positive(**values: float) -> None:
    for name, value in values.items():
        if value <= 0:
            raise ConsumerError(f"{name}={value!r} must be positive", fix=f"pass {name} > 0")


def _client_for(broker: Any, *, block: float) -> redis.asyncio.Redis:
    """Our own connection pool to the broker (reads block; they must not starve others)."""
    options: dict[str, Any] = {
        "decode_responses": True,
        "socket_connect_timeout": 2.0,
        # a read blocks for `block` seconds; anything much longer is a paused or dead broker
        "socket_timeout": block + 5.0,
        "retry": Retry(ExponentialBackoff(cap=0.5, base=0.05), 2),
    }
    if isinstance(broker, str):
        return redis.asyncio.Redis.from_url(broker, **options)
    url = getattr(broker, "url", None)
    if isinstance(url, str):  # eventlab.broker.Broker
        return redis.asyncio.Redis.from_url(url, **options)
    state = getattr(
        getattr(getattr(broker, "config", None), "broker_config", None), "connection", None
    )
    conn_options = getattr(state, "_options", None)
    if isinstance(conn_options, dict):  # faststream RedisBroker: same host, port, db, password
        keep = {
            k: v
            for k, v in conn_options.items()
            if k in {"host", "port", "db", "username", "password", "ssl", "path"}
        }
        if "path" in keep:
            return redis.asyncio.Redis(unix_socket_path=keep.pop("path"), **keep, **options)
        return redis.asyncio.Redis(**keep, **options)
    raise ConsumerError(
        f"cannot tell where {broker!r} connects",
        fix="pass a faststream RedisBroker, an eventlab Broker or a redis:// URL",
    )


# -- dead letters -------------------------------------------------------------------


def _dead_letter(entry_id: Any, raw: Mapping[bytes, bytes]) -> DeadLetter:
    fields = {_text(k): _text(v) for k, v in raw.items()}
    original = {k: v for k, v in fields.items() if k not in DLQ_FIELDS}
    strip = {name.encode() for name in DLQ_FIELDS}
    return DeadLetter(
        entry_id=entry_id,
        original_id=fields.get("dlqid", ""),
        event_id=original.get("id"),
        reason=fields.get("dlqreason", ""),
        error=fields.get("dlqerror", ""),
        attempts=int(fields.get("dlqattempts") or 0),
        stream=fields.get("dlqstream", ""),
        group=fields.get("dlqgroup", ""),
        consumer=fields.get("dlqconsumer", ""),
        fields=original,
        raw={k: v for k, v in raw.items() if k not in strip},
    )


def dead_letters(client: redis.Redis, stream: str, *, group: str | None = None) -> list[DeadLetter]:
    """Return the dead letters of ``stream`` (optionally only those ``group`` gave up on).

    Introduced in lesson 04.
    """
    # read as bytes: a dead letter that is not UTF-8 (written by another client) is
    # exactly the one to list, not the one to fail on
    rows: Any = client.execute_command(  # type: ignore[no-untyped-call]
        "XRANGE", dlq_key(stream), "-", "+", **{NEVER_DECODE: []}
    )
    letters = [_dead_letter(_text(i), f) for i, f in rows]
    return [d for d in letters if group is None or d.group == group]


def dead_letters_frame(client: redis.Redis, stream: str) -> pd.DataFrame:
    """Return :func:`dead_letters` as a DataFrame (one row per dead letter, no raw fields)."""
    columns = [n for n in DeadLetter.__slots__ if n not in {"fields", "raw"}]
    letters = dead_letters(client, stream)
    return pd.DataFrame([[getattr(d, c) for c in columns] for d in letters], columns=columns)


def _select(
    letters: list[DeadLetter],
    ids: Iterable[str] | None,
    group: str | None,
    where: Callable[[DeadLetter], bool] | None,
) -> list[str]:
    wanted = None if ids is None else set(ids)
    return [
        d.entry_id
        for d in letters
        if (wanted is None or d.entry_id in wanted)
        and (group is None or d.group == group)
        and (where is None or where(d))
    ]


def redrive(
    client: redis.Redis,
    stream: str,
    *,
    ids: Iterable[str] | None = None,
    group: str | None = None,
    where: Callable[[DeadLetter], bool] | None = None,
) -> list[str]:
    """Move dead letters back to ``stream`` (same event id, fields as published).

    Each selected dead letter is appended to the stream and deleted from
    ``<stream>:dlq`` in one Lua call, so a redrive run twice moves each event
    once. Groups that already processed the event skip it (dedupe store).

    Args:
        client: A sync client.
        stream: The stream key.
        ids: Dead-letter entry ids to move (default: all that match).
        group: Only dead letters this group gave up on.
        where: Only dead letters for which this returns ``True``.

    Returns:
        The new entry ids in ``stream``.

    Introduced in lesson 04.
    """
    chosen = _select(dead_letters(client, stream), ids, group, where)
    if not chosen:
        return []
    try:
        moved: Any = _REDRIVE.sync(client, [dlq_key(stream), stream], chosen)
    except redis.ResponseError as exc:
        if _is_oom(exc):
            raise _out_of_memory(exc, "redrive dead letters") from None
        raise
    return [_text(new) for _, new in moved]


async def aredrive(
    client: redis.asyncio.Redis,
    stream: str,
    *,
    ids: Iterable[str] | None = None,
    group: str | None = None,
    where: Callable[[DeadLetter], bool] | None = None,
) -> list[str]:
    """Asyncio :func:`redrive`."""
    rows: Any = await client.execute_command(  # type: ignore[no-untyped-call]
        "XRANGE", dlq_key(stream), "-", "+", **{NEVER_DECODE: []}
    )
    letters = [_dead_letter(_text(i), f) for i, f in rows]
    chosen = _select(letters, ids, group, where)
    if not chosen:
        return []
    try:
        moved: Any = await _REDRIVE(client, [dlq_key(stream), stream], chosen)
    except redis.ResponseError as exc:
        if _is_oom(exc):
            raise _out_of_memory(exc, "redrive dead letters") from None
        raise
    return [_text(new) for _, new in moved]


# -- the command ----------------------------------------------------------------------


def register_cli(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``eventlab dlq STREAM [--group G] [--redrive [--id ID ...]]`` to the command."""
    dlq = sub.add_parser("dlq", help="list a stream's dead letters, or redrive them")
    dlq.add_argument("stream", help="a stream name ('orders') or key ('lab:{orders}')")
    dlq.add_argument("--group", default=None, help="only dead letters this group gave up on")
    dlq.add_argument("--redrive", action="store_true", help="move them back to the stream")
    dlq.add_argument("--id", action="append", default=None, help="only this dead-letter id")
    dlq.set_defaults(handler=_cmd_dlq)


def _cmd_dlq(args: argparse.Namespace) -> int:
    from eventlab.broker import connect  # noqa: PLC0415 - only when the command runs
    from eventlab.streams import stream_key  # noqa: PLC0415

    stream = args.stream if ":" in args.stream else stream_key(args.stream)
    client = connect()
    try:
        if args.redrive:
            moved = redrive(client, stream, ids=args.id, group=args.group)
            print(f"redrove {len(moved)} dead letters to {stream}")  # noqa: T201 - a command prints
            return 0
        letters = [
            d
            for d in dead_letters(client, stream, group=args.group)
            if args.id is None or d.entry_id in args.id
        ]
        for d in letters:
            print(  # noqa: T201 - a command prints
                f"{d.entry_id}  {d.group}  attempts={d.attempts}  {d.error}: {d.reason}"
            )
        print(f"{len(letters)} dead letters in {stream}:dlq")  # noqa: T201
        return 0
    finally:
        client.close()
