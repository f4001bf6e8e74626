"""Small raw-redis consumers the scenarios use (one runs as its own process to be killed).

They are deliberately plain ``XREADGROUP`` / ``XACK`` loops, so a learner can
read exactly what happens between the effect and the ack. The runtime in
:mod:`eventlab.consumer` is what services use; these show the mechanics.
Imports stay light (no pandas) so a spawned worker starts fast.
"""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime
from typing import Any

import redis

from eventlab import _env

# Effect + "seen" mark in one atomic step: a redelivered event id has no second
# effect. Every key shares the stream's {hash tag}.
DEDUPE_EFFECT = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then
  redis.call('RPUSH', KEYS[2], ARGV[1])
  return 1
end
return 0
"""

# The projection's effect, the dedupe mark and the applied-log in one atomic
# step: a batch retried after a lost reply never counts an event twice, and an
# event marked seen always has its effect.
PROJECT_EFFECT = """
if redis.call('SADD', KEYS[1], ARGV[1]) == 1 then
  redis.call('HINCRBY', KEYS[3], ARGV[2], 1)
  redis.call('RPUSH', KEYS[2], ARGV[1])
  return 1
end
return 0
"""

# Versioned upsert: keep the newest version of an aggregate, never go back.
VERSIONED_UPSERT = """
local current = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if tonumber(ARGV[2]) > current then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  return tonumber(ARGV[2])
end
return current
"""


def naive_key(stream: str) -> str:
    """Return the list where a consumer without dedupe appends one id per effect."""
    return f"{stream}:effects:naive"


def idempotent_key(stream: str) -> str:
    """Return the list where the dedupe consumer appends one id per effect."""
    return f"{stream}:effects:idempotent"


def seen_key(stream: str) -> str:
    """Return the set of event ids whose effect was applied (the dedupe store)."""
    return f"{stream}:seen"


def read(
    client: redis.Redis,
    stream: str,
    group: str,
    consumer: str,
    *,
    count: int,
    position: str = ">",
    block_ms: int | None = None,
) -> list[tuple[str, dict[str, str]]]:
    """XREADGROUP one batch; return ``(entry id, fields)`` pairs (empty when nothing)."""
    reply: Any = client.xreadgroup(group, consumer, {stream: position}, count=count, block=block_ms)
    if not reply:
        return []
    return [(str(e), dict(f)) for e, f in reply[0][1] if f is not None]


def apply_effects(
    client: redis.Redis, stream: str, event_ids: list[str], *, naive: bool, idempotent: bool
) -> None:
    """Apply the effect of each event: naive (append every time) and/or idempotent (once per id)."""
    pipe = client.pipeline(transaction=False)
    for event_id in event_ids:
        if naive:
            pipe.rpush(naive_key(stream), event_id)
        if idempotent:
            pipe.eval(DEDUPE_EFFECT, 2, seen_key(stream), idempotent_key(stream), event_id)
    pipe.execute()


def _line(process: str, kind: str, f: str, value: Any) -> str:
    stamp = datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")
    record = {"time": stamp, "process": process, "type": kind, "f": f, "value": value}
    return json.dumps(record) + "\n"


URL_ENV = _env.SCENARIO_URL
"""The broker URL reaches a worker in its environment: argv shows in ``ps``, passwords too."""


def crashing_consumer(  # noqa: PLR0917 - spawn passes arguments by position
    stream: str,
    group: str,
    consumer: str,
    history_path: str,
    crash_after: str,
    count: str = "10",
) -> None:
    """Consume with effects-then-ack; after ``crash_after`` deliveries, hang before the ack.

    The parent kills this process with SIGKILL while it hangs: the last batch
    has its effects applied but is never acknowledged. Each delivery is written
    to ``history_path`` as a JSONL ``dequeue`` record before its effect. The
    broker's URL comes from ``$EVENTLAB_SCENARIO_URL`` (never the command line).
    """
    from eventlab.processes import signal_ready  # noqa: PLC0415 - light import, child only

    client = redis.Redis.from_url(_env.get(URL_ENV) or "", decode_responses=True)
    limit, delivered = int(crash_after), 0
    with open(history_path, "a", encoding="utf-8") as log:  # noqa: PTH123 - one plain file
        while True:
            batch = read(client, stream, group, consumer, count=int(count), block_ms=100)
            if not batch:
                continue
            ids = [fields.get("id", entry) for entry, fields in batch]
            log.write(_line(consumer, "ok", "dequeue", ids))
            log.flush()
            os.fsync(log.fileno())
            apply_effects(client, stream, ids, naive=True, idempotent=True)
            delivered += len(ids)
            if delivered >= limit:
                signal_ready()  # effects applied, ack not sent: kill me now
                while True:
                    time.sleep(1)
            client.xack(stream, group, *[entry for entry, _ in batch])
