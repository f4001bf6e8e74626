"""Lab 05, a plausible first attempt: throttled, but the stream is never capped (7 of 8)."""
# ruff: noqa: ARG001

from __future__ import annotations

import time


def group_lag(client, stream, group) -> int:
    for info in client.xinfo_groups(stream):
        if info["name"] == group:
            return int(info["lag"] or 0)
    return 0


def produce(client, stream, group, events, *, max_lag, maxlen, poll=0.002) -> int:
    n = 0
    for event in events:
        while group_lag(client, stream, group) >= max_lag:
            time.sleep(poll)
        client.xadd(stream, event.to_fields())  # forgot the cap
        n += 1
    return n
