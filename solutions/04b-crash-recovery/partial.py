"""Lab 04b, a plausible first attempt: one XAUTOCLAIM call, min_idle ignored (scores 4 of 8)."""
# ruff: noqa: ARG001

from __future__ import annotations


def reclaim(client, stream, group, consumer, *, min_idle, handle, count=100) -> int:
    _, entries, *_ = client.xautoclaim(stream, group, consumer, min_idle_time=0, count=count)
    for entry_id, fields in entries:
        handle(entry_id, fields)
    return len(entries)
