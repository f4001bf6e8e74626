"""The consumer's records, errors and effects: what handlers, health and dead letters look like.

Part of :mod:`eventlab.consumer` (lessons 03 and 04); import from there.
"""

from __future__ import annotations

import functools
import hashlib
import json
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
import redis
import redis.asyncio
from redis.client import NEVER_DECODE
from redis.crc import key_slot

from eventlab import _lua
from eventlab._errors import EventlabError
from eventlab.envelope import Event
from eventlab.metrics import EventRow

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
_slow_dumps = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _dumps(plan: Any) -> bytes | str:
    """Compact UTF-8 JSON; orjson is ~5x faster than json on a batch's plan."""
    try:
        return orjson.dumps(plan)
    except (TypeError, orjson.JSONEncodeError):
        return _slow_dumps(plan)  # e.g. a lone surrogate, or an integer beyond 64 bits


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
    kind = type(raw)
    if kind is list:  # an unparsed reply (XREADGROUP, the reclaim script): all UTF-8 bytes
        it = iter(raw)
        try:
            return {name.decode(): value.decode() for name, value in zip(it, it, strict=True)}
        except (AttributeError, UnicodeDecodeError, ValueError):
            pass  # text already, or not UTF-8: one pair at a time, naming the bad ones
    elif kind is dict:  # redis-py's parsed reply: bytes names and values
        try:
            return {name.decode(): value.decode() for name, value in raw.items()}
        except (AttributeError, UnicodeDecodeError):
            pass
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
    """Return the dedupe store of ``group`` on ``stream``: ``{lab:orders}:seen:billing``.

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


@functools.lru_cache(maxsize=4096)  # a subscription asks for its stream's once per event
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
    ``{lab:orders}:billed`` for ``{lab:orders}``), because one Lua call writes them
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

    ids: list[str] = field(default_factory=list)  # entry ids, one per entry in ``flat``
    # the commit script's plan, flat: per entry `entry id, event id, kind, n`, then n items
    flat: list[Any] = field(default_factory=list)
    keys: dict[str, int] = field(default_factory=dict)
    rows: list[EventRow] = field(default_factory=list)

    def key(self, name: str) -> int:
        index = self.keys.get(name)
        if index is None:
            index = self.keys[name] = len(self.keys) + 4  # KEYS[1..3] are fixed
        return index

    def add(self, entry_id: str, event_id: str, kind: str, items: Sequence[Any]) -> None:
        """Add one entry: ``kind`` "ok" (items: ops), "dead" or "retry" (``_lua.COMMIT``)."""
        self.ids.append(entry_id)
        self.flat += (entry_id, event_id, kind, len(items), *items)

    def ops(self, ops: Sequence[tuple[str, str, tuple[str, ...]]]) -> list[Any]:
        """An ``Effects``' ops as "ok" items: ``opname, key index, m`` and m args each."""
        items: list[Any] = []
        for op, key, args in ops:
            items += (op, self.key(key), len(args), *args)
        return items


_Entry = tuple[str, Mapping[str, str], int]  # entry id, fields, delivery count
