"""A projector that acknowledges before it writes, and a "fix" that just runs it again.

Not graded and not an answer: the notebook runs it to show the failure this lab
is about (a read model that drifted, and stays drifted). Your work is in
``exercise.py``.
"""

from __future__ import annotations

import json
from typing import Any

import redis

STATUS = {
    "OrderPlaced": "placed",
    "OrderPaid": "paid",
    "OrderShipped": "shipped",
    "OrderCancelled": "cancelled",
}


def project(
    client: redis.Redis, stream: str, group: str, view_key: str, *, crash_after_ack: int = 0
) -> int:
    """Read new entries, XACK each, then write its row; the first ``crash_after_ack`` rows are lost.

    Losing a write after its ack is what a crash between the two does: the
    entry is never delivered again. Returns how many entries were read.
    """
    reply: Any = client.xreadgroup(group, "projector", {stream: ">"}, count=100)
    read = 0
    for _, entries in reply or []:
        for entry_id, fields in entries:
            client.xack(stream, group, entry_id)
            read += 1
            if read <= crash_after_ack:
                continue  # the process died here, between the ack and the write
            data = json.loads(fields["data"])
            row = {"status": STATUS[fields["type"]], "version": data["version"]}
            client.hset(view_key, data["order"], json.dumps(row))
    return read
