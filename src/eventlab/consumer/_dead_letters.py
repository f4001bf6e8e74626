"""Dead letters: list a stream's ``<stream>:dlq`` and redrive them back to the stream.

Part of :mod:`eventlab.consumer` (lesson 04); import from there.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pandas as pd
import redis
import redis.asyncio
from redis.client import NEVER_DECODE

from eventlab.consumer._types import (
    _REDRIVE,
    DLQ_FIELDS,
    DeadLetter,
    _is_oom,
    _out_of_memory,
    _text,
)
from eventlab.streams import dlq_key


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
