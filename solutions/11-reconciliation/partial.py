"""Lab 11, a plausible first attempt: fixes rows it has, never adds or deletes any (2 of 8)."""

from __future__ import annotations

import json

STATUS = {
    "OrderPlaced": "placed",
    "OrderPaid": "paid",
    "OrderShipped": "shipped",
    "OrderCancelled": "cancelled",
}


def fold_log(client, stream):
    truth = {}
    for _, fields in client.xrange(stream):
        if fields.get("type") not in STATUS:
            continue
        data = json.loads(fields["data"])
        row = truth.setdefault(data["order"], {"status": None, "version": 0})
        if data["version"] > row["version"]:
            row.update(status=STATUS[fields["type"]], version=data["version"])
    return truth


def reconcile(client, stream, view_key):
    truth = fold_log(client, stream)
    repaired = 0
    for order, raw in client.hgetall(view_key).items():
        if order in truth and json.loads(raw) != truth[order]:
            client.hset(view_key, order, json.dumps(truth[order]))
            repaired += 1
    return repaired
