"""Lab 05, its own connection and no throttle: publishes as fast as it can (< 8).

Opens its own client from ``REDIS_URL`` and never looks at the lag: the
consumer falls behind and ``MAXLEN`` trims entries it never read. Checks that
watch the stream (not the client they hand over) see it all the same.
"""
# ruff: noqa: ARG001

from __future__ import annotations

import os

import redis


def group_lag(client, stream, group) -> int:
    for info in client.xinfo_groups(stream):
        if info["name"] == group:
            return int(info["lag"] or 0)
    raise ValueError(group)


def produce(client, stream, group, events, *, max_lag, maxlen, poll=0.002) -> int:
    own = redis.Redis.from_url(os.environ["REDIS_URL"], decode_responses=True)
    published = 0
    for event in events:
        own.xadd(stream, event.to_fields(), maxlen=maxlen, approximate=True)
        published += 1
    own.close()
    return published
