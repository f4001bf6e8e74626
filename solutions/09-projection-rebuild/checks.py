"""Graded checks for lab 09 (projection rebuild): 10 points.

Workload (seeded): 40 orders, each a short history (placed, maybe paid,
shipped or cancelled), interleaved in one stream. The live projection is fed
the events at least once and out of order (``eventlab.faults.duplicate_burst``
and ``out_of_order``); the truth is the fold of the log in order, and
``eventlab.checker`` compares views and verifies versions never regress.
Fault: rebuilds killed before their 1st, 2nd, … command (the grader's fault
proxy, on any connection): after each, the stored view must be the old one or
the complete new one, never half-built.
"""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from eventlab import _labkit as kit
from eventlab import broker, checker, faults, tracing
from eventlab.envelope import Event
from eventlab.grading import CheckContext, check

SEED = 909
ORDERS = 40
CRASH_POSITIONS = 4  # rebuilds killed before their 1st … 4th command


def _history(ctx: CheckContext) -> tuple[list[Event], dict[str, dict[str, Any]]]:
    """Seeded order histories and the expected final view, built independently of apply()."""
    lives: list[list[Event]] = []
    truth: dict[str, dict[str, Any]] = {}
    for n in range(ORDERS):
        order = f"order-{n}"
        customer = f"customer-{ctx.rng.randrange(8)}"
        total = ctx.rng.randint(5, 500)
        later = [[], ["OrderPaid"], ["OrderPaid", "OrderShipped"], ["OrderCancelled"],
                 ["OrderPaid", "OrderCancelled"]]  # fmt: skip
        steps = ["OrderPlaced", *ctx.rng.choice(later)]
        life = []
        for version, kind in enumerate(steps, start=1):
            data: dict[str, Any] = {"order": order, "version": version}
            if kind == "OrderPlaced":
                data.update(customer=customer, total=total)
            life.append(Event(type=kind, source="orders", subject=order, data=data))
        lives.append(life)
        status = {"OrderPlaced": "placed", "OrderPaid": "paid", "OrderShipped": "shipped",
                  "OrderCancelled": "cancelled"}[steps[-1]]  # fmt: skip
        truth[order] = {"status": status, "customer": customer, "total": total,
                        "version": len(steps)}  # fmt: skip
    events: list[Event] = []
    while any(lives):  # interleave the orders, each in its own order
        life = ctx.rng.choice([life for life in lives if life])
        events.append(life.pop(0))
    return events, truth


def _published(ctx: CheckContext) -> tuple[Any, str, list[Event], dict[str, dict[str, Any]]]:
    client = ctx.client()
    stream = ctx.key("orders")
    events, truth = _history(ctx)
    kit.publish_all(client, stream, events)
    return client, stream, events, truth


def _mismatch(view: dict[str, Any], truth: dict[str, Any]) -> str:
    keys = checker.diff(view, truth)
    if not keys:
        return ""
    key = keys[0]
    return f"{len(keys)} orders differ, e.g. {key}: got {view.get(key)}, expected {truth.get(key)}"


@check(points=3, hint="status from STATUS, version from data; OrderPlaced sets customer and total")
def fold_matches_history(ctx: CheckContext) -> None:
    """Folding the log in order gives the expected view of every order."""
    events, truth = _history(ctx)
    view: dict[str, Any] = {}
    for event in events:
        ctx.exercise.apply(view, event)
    why = _mismatch(view, truth)
    assert not why, why


@check(points=2, hint="ignore an event whose version is not newer than the view's")
def redelivery_never_regresses(ctx: CheckContext) -> None:
    """Duplicated and reordered deliveries neither change the result nor move a version back."""
    events, truth = _history(ctx)
    noisy = faults.out_of_order(
        faults.duplicate_burst(events, fraction=0.3, seed=ctx.seed), window=4, seed=ctx.seed
    )
    view: dict[str, Any] = {}
    seen = []
    for event in noisy:
        ctx.exercise.apply(view, event)
        order = event.data["order"]
        if order in view:
            seen.append((order, int(view[order]["version"])))
    verdict = checker.monotonic_versions(pd.DataFrame(seen, columns=["aggregate", "version"]))
    assert verdict.valid, f"versions went backwards for {verdict.counts['regressions']} updates"
    why = _mismatch(view, truth)
    assert not why, why


def _rebuild_in_child(rebuild: Any, url: str, stream: str, key: str) -> None:
    """The learner's rebuild in a forked process (killed where the sweep says)."""
    rebuild(broker.client_for_url(url, decode_responses=True), stream, key)


def _stored(client: Any, key: str) -> dict[str, Any]:
    return {k: json.loads(v) for k, v in client.hgetall(key).items()}


@check(points=3, hint="fold XRANGE into a fresh view, then DEL key and HSET it in one MULTI")
def rebuild_equals_truth(ctx: CheckContext) -> None:
    """Rebuilding over a stale, corrupted projection gives exactly the fold of the log."""
    client, stream, events, truth = _published(ctx)
    key = stream + ":view"
    client.hset(key, mapping={"order-0": json.dumps({"status": "lost"}), "ghost": "{}"})
    stale = _stored(client, key)

    def old_or_new(position: int) -> None:
        stored = _stored(client, key)
        assert stored == stale or not checker.diff(stored, truth), (
            f"a rebuild killed before its command {position} left a half-built view "
            f"({len(stored)} rows, neither the old view nor the new): swap it in in one step"
        )

    kit.sweep(
        _rebuild_in_child, ctx.exercise.rebuild, ctx.url, stream, key,
        positions=range(1, CRASH_POSITIONS + 1), timeout=5.0, after_each=old_or_new,
    )  # fmt: skip
    folded = ctx.exercise.rebuild(client, stream, key)
    assert folded == len(events), f"rebuild folded {folded} events, the log has {len(events)}"
    why = _mismatch(_stored(client, key), truth)
    assert not why, why
    leftovers = [k for k in client.scan_iter(match=key + "*") if k != key]
    assert not leftovers, f"temporary keys left behind: {leftovers}"


@check(points=2, hint="use the fold you are given (the fold= argument), not always apply")
def new_projection_backfilled(ctx: CheckContext) -> None:
    """A new projection (revenue per customer) is backfilled from old history by rebuild."""
    client, stream, _, truth = _published(ctx)

    def revenue(view: dict[str, Any], event: Event) -> None:
        if event.type == "OrderPlaced":
            row = view.setdefault(event.data["customer"], {"orders": 0, "total": 0})
            row["orders"] += 1
            row["total"] += event.data["total"]

    key = stream + ":revenue"
    ctx.exercise.rebuild(client, stream, key, fold=revenue)
    expected: dict[str, Any] = {}
    for row in truth.values():
        mine = expected.setdefault(row["customer"], {"orders": 0, "total": 0})
        mine["orders"] += 1
        mine["total"] += row["total"]
    why = _mismatch(_stored(client, key), expected)
    assert not why, why


@check(points=2, hint="read the log in one XRANGE, write the whole view in one MULTI", stretch=True)
def rebuild_in_few_round_trips(ctx: CheckContext) -> None:
    """Stretch: the rebuild costs at most 4 round trips, whatever the number of orders."""
    client, stream, _, truth = _published(ctx)
    key = stream + ":view"
    counted = tracing.counted_client(ctx.url)
    ctx.exercise.rebuild(counted, stream, key)
    trips = tracing.round_trips(counted)
    why = _mismatch(_stored(client, key), truth)
    assert not why, why
    assert trips <= 4, f"{trips} round trips to rebuild {len(truth)} orders"
