"""Publish, replay, and inspect streams and consumer groups (sync and asyncio).

Names (docs/architecture.md, "One event, from publish to chart"): a stream is
``{<namespace>:<name>}``. The braces are a Redis Cluster hash tag holding the
namespace *and* the name, so on a cluster each learner's streams spread over the
slots (``{alice:orders}`` and ``{bob:orders}`` land apart) while a stream, its
dead letters (``<stream>:dlq``) and its dedupe and effect keys (``<stream>:…``)
share one slot. On one node nothing changes but the spelling; keys written by
earlier checkouts as ``<namespace>:{<name>}`` are not found under the new names
(``docs/runtime.md``, "Redis Cluster", shows the rename).

Introduced in lessons 01 (publish, replay) and 02 (groups, pending, lag).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import redis
import redis.asyncio

from eventlab import _env
from eventlab._errors import EventlabError
from eventlab.broker import state_dir
from eventlab.envelope import Event, _flat_fields, _resp_fields

__all__ = [
    "GROUP_COLUMNS",
    "PendingSummary",
    "StreamError",
    "acreate_group",
    "apublish",
    "apublish_many",
    "check_start",
    "create_group",
    "dlq_key",
    "entries",
    "groups_frame",
    "key_patterns",
    "namespace",
    "pending_summary",
    "publish",
    "publish_many",
    "replay",
    "run_namespace",
    "run_pattern",
    "stream_key",
]

GROUP_COLUMNS = (
    "stream",
    "group",
    "length",
    "consumers",
    "pending",
    "lag",
    "entries_read",
    "last_delivered_id",
)
"""Columns of :func:`groups_frame`, in order."""

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
_CHUNK = 500


def namespace() -> str:
    """Return ``$EVENTLAB_NAMESPACE`` (default ``lab``): the prefix that keeps learners apart.

    Without the variable, the name saved by ``eventlab workshop join NAME`` (the
    file ``namespace`` in the state folder) is used, so a workshop learner's
    notebooks need no environment set up.

    Raises:
        EventlabError: The namespace has characters other than letters, digits, ``_.-``,
            or is reserved (``eventlab``, or ``lab`` in another letter case).
    """
    value = _env.get(_env.NAMESPACE) or _joined_namespace() or "lab"
    if not _NAME.match(value):
        raise EventlabError(
            f"EVENTLAB_NAMESPACE={value!r} has characters other than letters, digits, _ . -",
            fix="choose a name such as 'alice' or 'team-3'",
        )
    if value != "lab" and value.lower() in {"lab", "eventlab"}:
        # 'eventlab:' holds the room's progress, and 'Lab' would pass for the solo
        # default in one place and for a learner in another: reserved in any case.
        raise EventlabError(
            f"namespace {value!r} is reserved ('lab' is the solo default, 'eventlab' the "
            "kit's own prefix; any letter case)",
            fix="choose your own name, such as 'alice': eventlab workshop join alice",
        )
    return value


_STATE_FOLDERS: dict[tuple[str, str | None], Path] = {}


def _joined_namespace() -> str | None:
    # The file is read on every call: a learner may join or leave while a kernel
    # runs, and a stale name would write into someone else's keys. Only the
    # folder search is cached (it stats every parent), once the folder exists.
    where = (str(Path.cwd()), _env.get(_env.STATE))
    folder = _STATE_FOLDERS.get(where)
    if folder is None:
        folder = state_dir()
        if folder.is_dir():
            _STATE_FOLDERS[where] = folder
    try:
        return (folder / "namespace").read_text().strip() or None
    except OSError:
        return None


def stream_key(name: str, *, namespace_: str | None = None) -> str:
    """Return the key of stream ``name`` in the namespace: ``{lab:orders}``.

    The whole key is the hash tag, so on a Redis Cluster the slot depends on the
    namespace and the name; keys derived by suffix (``{lab:orders}:dlq``) share it.
    """
    if not _NAME.match(name):
        raise ValueError(f"stream name {name!r} may use only letters, digits, _ . -")
    return f"{{{namespace_ or namespace()}:{name}}}"


def key_patterns(namespace_: str | None = None) -> tuple[str, str]:
    """Return the SCAN globs (and ACL key patterns) of every key of a namespace.

    ``{alice:*`` covers the streams and every key named after one; ``alice:*``
    the namespace's other keys (the schema registry) and keys of older releases.
    """
    ns = namespace_ or namespace()
    return f"{{{ns}:*", f"{ns}:*"


def dlq_key(stream: str) -> str:
    """Return the dead-letter stream of ``stream``: ``<stream>:dlq``."""
    return f"{stream}:dlq"


def _xadd_args(maxlen: int | None, *, approximate: bool) -> dict[str, Any]:
    if maxlen is None:
        return {}
    if maxlen <= 0:
        raise ValueError("maxlen must be a positive count of entries")
    return {"maxlen": maxlen, "approximate": approximate}


def _xadd_head(stream: str, maxlen: int | None, *, approximate: bool) -> tuple[Any, ...]:
    """``XADD <stream> [MAXLEN [~] <n>] *``: what precedes an event's fields."""
    if maxlen is None:
        return ("XADD", stream, "*")
    _xadd_args(maxlen, approximate=approximate)  # the same checks
    return ("XADD", stream, "MAXLEN", "~", maxlen, "*") if approximate else (
        "XADD", stream, "MAXLEN", maxlen, "*"
    )  # fmt: skip


def publish(
    client: redis.Redis,
    stream: str,
    event: Event,
    *,
    maxlen: int | None = None,
    approximate: bool = True,
) -> str:
    """XADD one event as plain fields; return its entry id.

    Args:
        client: A sync client.
        stream: The stream key (see :func:`stream_key`).
        event: The event to append.
        maxlen: Trim the stream to about this many entries (``MAXLEN ~``);
            entries trimmed before a group read them are lost to that group.
        approximate: ``False`` trims exactly (slower).
    """
    head = _xadd_head(stream, maxlen, approximate=approximate)
    return str(client.execute_command(*_flat_fields(event, *head)))  # type: ignore[no-untyped-call]


def publish_many(
    client: redis.Redis,
    stream: str,
    events: Iterable[Event],
    *,
    maxlen: int | None = None,
    approximate: bool = True,
    chunk: int = _CHUNK,
) -> list[str]:
    """XADD many events, pipelined ``chunk`` at a time; return their entry ids in order.

    Each chunk is one request the function builds itself and sends on one pooled
    connection (on a cluster, a redis-py pipeline). An error reply to any
    ``XADD`` is raised once every reply of its chunk is read, as a pipeline
    raises it; the chunks before it are written, the ones after are not sent.
    """
    head = _xadd_head(stream, maxlen, approximate=approximate)
    ids: list[str] = []
    if isinstance(client, redis.RedisCluster):  # one node per slot: redis-py routes
        for batch in _chunks(events, chunk):
            pipe = client.pipeline(transaction=False)
            stage = pipe.execute_command
            for event in batch:  # XADD as one flat command: no dict, no xadd() argument checks
                stage(*_flat_fields(event, *head))
            ids.extend(map(str, pipe.execute()))
        return ids
    pool, prefix = client.connection_pool, _resp_head(head)
    for batch in _chunks(events, chunk):
        request = _request(head, prefix, batch)
        replies = _send(pool, request, len(batch))
        _raise_first_error(client, head, batch, replies)
        ids.extend(map(str, replies))
    return ids


def _resp_head(head: Sequence[Any]) -> str:
    """The RESP bulk strings of ``head`` (lengths in characters; see :func:`_request`)."""
    return "".join(f"${len(arg)}\r\n{arg}\r\n" for arg in map(str, head))


def _packed(args: Sequence[Any]) -> bytes:
    """One command in RESP, byte for byte what redis-py sends for ``str``/``int`` arguments."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = str(arg).encode()
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


def _request(head: Sequence[Any], prefix: str, batch: Sequence[Event]) -> bytes:
    """``XADD <head> <fields>`` of every event of ``batch`` in RESP, as one request.

    Built as text and encoded once: its lengths count characters, which are bytes
    while the text is ASCII; an event whose text is not (or with extensions) is
    packed from its argument list instead.
    """
    base, texts = len(head), []
    for event in batch:
        try:
            fields = _resp_fields(event)
        except TypeError:  # an optional attribute that is not a str: pack it as redis-py does
            fields = None
        texts.append(None if fields is None else f"*{base + fields[0]}\r\n{prefix}{fields[1]}")
    if None not in texts and (whole := "".join(texts)).isascii():  # type: ignore[arg-type]
        return whole.encode()
    return b"".join(
        text.encode()
        if text is not None and text.isascii()
        else _packed(_flat_fields(event, *head))
        for text, event in zip(texts, batch, strict=True)
    )


def _send(pool: redis.ConnectionPool, request: bytes, count: int) -> list[Any]:
    """Send ``request`` on one pooled connection and read its ``count`` replies.

    A connection error disconnects and retries as the client's ``retry`` says,
    the same as a redis-py pipeline; the connection goes back to the pool after.
    """
    conn: Any = pool.get_connection()
    try:
        return conn.retry.call_with_retry(  # type: ignore[no-any-return]
            lambda: _exchange(conn, request, count), lambda _error: conn.disconnect()
        )
    finally:
        pool.release(conn)


def _exchange(conn: Any, request: bytes, count: int) -> list[Any]:
    """Send ``request`` and read its ``count`` replies, every one, error replies included."""
    conn.send_packed_command((request,))  # an iterable of chunks
    replies: list[Any] = []
    for _ in range(count):
        try:
            replies.append(conn.read_response())
        except redis.ResponseError as error:  # keep reading: nothing left unread on the socket
            replies.append(error)
    return replies


def _raise_first_error(
    client: Any, head: Sequence[Any], batch: Sequence[Event], replies: Sequence[Any]
) -> None:
    """Raise the first error reply with the message a redis-py pipeline gives it."""
    for number, reply in enumerate(replies, 1):
        if isinstance(reply, redis.ResponseError):
            pipe = client.pipeline(transaction=False)  # its message, exactly
            pipe.annotate_exception(reply, number, _flat_fields(batch[number - 1], *head))
            raise reply


async def apublish(
    client: redis.asyncio.Redis,
    stream: str,
    event: Event,
    *,
    maxlen: int | None = None,
    approximate: bool = True,
) -> str:
    """Asyncio :func:`publish`."""
    head = _xadd_head(stream, maxlen, approximate=approximate)
    return str(await client.execute_command(*_flat_fields(event, *head)))  # type: ignore[no-untyped-call]


async def apublish_many(
    client: redis.asyncio.Redis,
    stream: str,
    events: Iterable[Event],
    *,
    maxlen: int | None = None,
    approximate: bool = True,
    chunk: int = _CHUNK,
) -> list[str]:
    """Asyncio :func:`publish_many`."""
    head = _xadd_head(stream, maxlen, approximate=approximate)
    ids: list[str] = []
    if isinstance(client, redis.asyncio.RedisCluster):
        for batch in _chunks(events, chunk):
            pipe = client.pipeline(transaction=False)
            for event in batch:
                pipe.execute_command(*_flat_fields(event, *head))
            ids.extend(map(str, await pipe.execute()))
        return ids
    pool, prefix = client.connection_pool, _resp_head(head)
    for batch in _chunks(events, chunk):
        request = _request(head, prefix, batch)
        replies = await _asend(pool, request, len(batch))
        _raise_first_error(client, head, batch, replies)
        ids.extend(map(str, replies))
    return ids


async def _asend(pool: redis.asyncio.ConnectionPool, request: bytes, count: int) -> list[Any]:
    """Asyncio :func:`_send`."""
    conn: Any = await pool.get_connection()  # type: ignore[no-untyped-call]

    async def disconnect(_error: Exception) -> None:
        await conn.disconnect()

    try:
        return await conn.retry.call_with_retry(  # type: ignore[no-any-return]
            lambda: _aexchange(conn, request, count), disconnect
        )
    finally:
        await pool.release(conn)


async def _aexchange(conn: Any, request: bytes, count: int) -> list[Any]:
    """Asyncio :func:`_exchange`."""
    await conn.send_packed_command((request,))
    replies: list[Any] = []
    for _ in range(count):
        try:
            replies.append(await conn.read_response())
        except redis.ResponseError as error:
            replies.append(error)
    return replies


def _chunks(items: Iterable[Event], size: int) -> Iterator[Sequence[Event]]:
    if size <= 0:
        raise ValueError("chunk must be a positive count of events")
    if isinstance(items, list | tuple):  # slices: no append per event
        for start in range(0, len(items), size):
            yield items[start : start + size]
        return
    batch: list[Event] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def entries(
    client: redis.Redis,
    stream: str,
    *,
    start: str = "-",
    end: str = "+",
    page: int = 1000,
) -> Iterator[tuple[str, dict[str, str]]]:
    """Yield ``(entry id, raw fields)`` from XRANGE, ``page`` entries per round trip."""
    cursor = start
    while True:
        rows = client.xrange(stream, min=cursor, max=end, count=page)
        for entry_id, fields in rows:  # type: ignore[union-attr]
            yield str(entry_id), dict(fields)  # type: ignore[arg-type]
        if len(rows) < page:  # type: ignore[arg-type]
            return
        cursor = "(" + str(rows[-1][0])  # type: ignore[index]


def replay(
    client: redis.Redis,
    stream: str,
    *,
    start: str = "-",
    end: str = "+",
) -> list[tuple[str, Event]]:
    """Return every event in ``stream`` between ``start`` and ``end`` as ``(entry id, Event)``.

    Raises:
        EnvelopeError: An entry is not a valid event (its fields and problems are
            on the error; use :func:`entries` to see raw fields).
    """
    return [
        (entry_id, Event.from_fields(fields))
        for entry_id, fields in entries(client, stream, start=start, end=end)
    ]


class StreamError(EventlabError, ValueError):
    """A stream or group option is wrong (a start that is not a group position)."""


def check_start(start: str) -> str:
    """Return ``start`` if it is a group position: ``"0"``, ``"$"`` or an entry id.

    The one check of a group's start position (:func:`create_group` and
    :class:`eventlab.consumer.Reliable` use it). Introduced in lesson 02.

    Raises:
        StreamError: Anything else (faststream's implied ``$`` is never assumed).
    """
    if start in {"0", "$"} or re.fullmatch(r"\d+-\d+", start):
        return start
    raise StreamError(
        f"start={start!r} is not a group position",
        fix="use '0' (read the whole history), '$' (only new events) or an entry id",
    )


def create_group(
    client: redis.Redis,
    stream: str,
    group: str,
    *,
    start: str,
    mkstream: bool = True,
    entries_read: int | None = None,
) -> bool:
    """Create consumer group ``group`` on ``stream`` reading from ``start``.

    Args:
        client: A sync client.
        stream: The stream key.
        group: The group name (the owning service: ``billing``).
        start: ``"0"`` reads the whole history; ``"$"`` only events added from now
            on. Always explicit: faststream's implied ``$`` skips earlier events.
        mkstream: Create an empty stream if it does not exist.
        entries_read: The group's ``ENTRIESREAD`` (how many entries ``start``
            stands after), so its lag is exact from the first read.

    Returns:
        ``True`` if created, ``False`` if it already existed (its position is kept).
    """
    try:
        client.xgroup_create(
            stream, group, id=check_start(start), mkstream=mkstream, entries_read=entries_read
        )
    except redis.ResponseError as exc:
        if "BUSYGROUP" in str(exc):
            return False
        raise
    return True


async def acreate_group(
    client: redis.asyncio.Redis,
    stream: str,
    group: str,
    *,
    start: str,
    mkstream: bool = True,
    entries_read: int | None = None,
) -> bool:
    """Asyncio :func:`create_group`."""
    try:
        await client.xgroup_create(
            stream, group, id=check_start(start), mkstream=mkstream, entries_read=entries_read
        )
    except redis.ResponseError as exc:
        if "BUSYGROUP" in str(exc):
            return False
        raise
    return True


@dataclass(frozen=True, slots=True)
class PendingSummary:
    """What a group has delivered but not yet acknowledged (XPENDING summary).

    Attributes:
        count: Entries in the pending list.
        lowest: The oldest pending entry id, or ``None``.
        highest: The newest pending entry id, or ``None``.
        consumers: Consumer name → its pending count.
    """

    count: int
    lowest: str | None
    highest: str | None
    consumers: dict[str, int]


def pending_summary(client: redis.Redis, stream: str, group: str) -> PendingSummary:
    """Return the pending-list summary of ``group`` on ``stream``."""
    reply: dict[str, Any] = client.xpending(stream, group)
    consumers = {str(c["name"]): int(c["pending"]) for c in reply.get("consumers") or []}
    return PendingSummary(
        count=int(reply["pending"]),
        lowest=reply.get("min"),
        highest=reply.get("max"),
        consumers=consumers,
    )


def groups_frame(client: redis.Redis, streams: Sequence[str] | None = None) -> pd.DataFrame:
    """Return one row per (stream, group): length, consumers, pending, lag, entries read.

    ``lag`` comes from ``XINFO GROUPS`` (Redis 7+); it is missing (``<NA>``) when
    the server cannot tell, e.g. after entries were deleted. Without ``streams``,
    every stream in the current namespace is listed.
    """
    if streams is None:
        streams = sorted(
            str(key)
            for pattern in key_patterns()
            for key in client.scan_iter(match=pattern, _type="stream")
            if not str(key).endswith(":dlq")
        )
    rows: list[dict[str, Any]] = []
    for stream in streams:
        try:
            length = int(client.xlen(stream))
            groups: list[dict[str, Any]] = client.xinfo_groups(stream)
        except redis.ResponseError:
            continue  # not a stream (or gone): nothing to report
        rows.extend(
            {
                "stream": stream,
                "group": group["name"],
                "length": length,
                "consumers": int(group["consumers"]),
                "pending": int(group["pending"]),
                "lag": group.get("lag"),
                "entries_read": group.get("entries-read"),
                "last_delivered_id": group["last-delivered-id"],
            }
            for group in groups
        )
    frame = pd.DataFrame(rows, columns=list(GROUP_COLUMNS))
    return frame.astype({"lag": "Int64", "entries_read": "Int64", "length": "int64"})


# -- grading runs (eventlab.grading makes them, eventlab.workshop cleans up after them) --

_RUN_TAG_HEX = 8  # hex digits of the random tag in a grading run's namespace


def run_namespace(base: str) -> str:
    """Return a fresh prefix for one grading run of ``base``: ``alice-g1a2b3c4d``.

    Each check of the run works in ``<prefix>-c<n>`` (the child's start-up in
    ``<prefix>-boot``); the grader deletes ``<prefix>-*`` when it finishes, and
    ``eventlab workshop reset --learner alice`` deletes what a crashed run left
    (:func:`run_pattern`). The charset stays within
    :func:`namespace`'s ``[A-Za-z0-9_.-]``.
    """
    return f"{base}-g{secrets.token_hex(_RUN_TAG_HEX // 2)}"


def run_pattern(base: str) -> str:
    """Return the SCAN glob of every key any grading run of ``base`` writes.

    ``alice-g[0-9a-f]…[0-9a-f]-*``: exactly the tag :func:`run_namespace` makes, so
    another learner's name (``alice-gary``) does not match. A run's streams are
    ``{alice-g…-c1:orders}``: prefix this glob with ``{`` to match them too.
    """
    return f"{base}-g{'[0-9a-f]' * _RUN_TAG_HEX}-*"
