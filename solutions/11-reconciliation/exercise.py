"""Lab 11 — reconciliation under chaos: an anti-entropy job that repairs drift.

A projector keeps a read model (the hash ``view_key``: order id -> JSON
``{"status", "version"}``) up to date from the ``orders`` stream. Under chaos
it drifts: a partition delays it, a crash between ack and write loses an
update, a lagging replica writes back stale rows, an operator deletes a key.
Retries and idempotency cannot fix what was never applied. An anti-entropy
job can: it compares the view with the truth (the fold of the log) and repairs
the difference.

Write :func:`reconcile`. :func:`fold_log` (given) computes the truth. The
notebook's hints (idea, commands, skeleton) are there if you want them.
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


def fold_log(client: redis.Redis, stream: str) -> dict[str, dict[str, Any]]:
    """Return the truth: order id -> {"status", "version"} folded from the whole stream."""
    truth: dict[str, dict[str, Any]] = {}
    for _, fields in client.xrange(stream):
        if fields.get("type") not in STATUS:
            continue
        data = json.loads(fields["data"])
        row = truth.setdefault(data["order"], {"status": None, "version": 0})
        if data["version"] > row["version"]:
            row.update(status=STATUS[fields["type"]], version=data["version"])
    return truth


def reconcile(client: redis.Redis, stream: str, view_key: str) -> int:
    """Make the view equal to the fold of the log; return how many orders were repaired.

    Afterwards ``view_key`` (order id -> JSON ``{"status", "version"}``) holds
    exactly :func:`fold_log`'s rows: a missing or wrong row is written, a row
    for an order the log does not know is removed. The count is the number of
    orders whose row was written or removed, each counted once.

    Guarantees: readers never see a half-repaired view (all repairs land at
    once); when view and truth already agree nothing is written and 0 is
    returned (a second run is a no-op); it works over a slow network (a few ms
    per round trip) within the grader's time.
    """
    # BEGIN SOLUTION
    truth = fold_log(client, stream)
    view = {order: json.loads(raw) for order, raw in client.hgetall(view_key).items()}
    wrong = {order: row for order, row in truth.items() if view.get(order) != row}
    extra = [order for order in view if order not in truth]
    if not wrong and not extra:
        return 0
    pipe = client.pipeline(transaction=True)
    if wrong:
        pipe.hset(view_key, mapping={order: json.dumps(row) for order, row in wrong.items()})
    if extra:
        pipe.hdel(view_key, *extra)
    pipe.execute()
    return len(wrong) + len(extra)
    # END SOLUTION
