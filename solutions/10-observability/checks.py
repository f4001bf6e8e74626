"""Graded checks for lab 10 (observability): 10 points.

The flow runs on ``eventlab.tracing``'s virtual clock over real streams of the
broker: 200 orders, one every 2 ms, through orders, inventory, billing (your
``billing_step``, its gateway costing 20 ms a call, some cards declined) and
courier. A round trip to the broker costs 1 ms. Virtual time makes every
verdict repeat exactly, however busy the machine. ``hot_spot`` is judged on
three seeded traces, each with another slow service, and one service whose
every hop is slow to handle but never queues (the trap of averaging handling
time).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

from eventlab import tracing
from eventlab.grading import CheckContext, check

SEED = 1010
ORDERS = 200
INTERVAL = 0.002  # seconds between two orders placed
TRACE_ORDERS = 120
TARGET = 0.150  # seconds, as exercise.TARGET says


def _gateways(declined: frozenset[str]) -> dict[str, tracing.Gateway]:
    return {
        "orders": tracing.Gateway(0.001),
        "inventory": tracing.Gateway(0.002, 0.0001),
        "billing": tracing.Gateway(0.020, declined=declined),
        "courier": tracing.Gateway(0.003),
    }


def _flow(ctx: CheckContext, *, interval: float = INTERVAL) -> tuple[Any, dict[str, Any], set[str]]:
    declined = {f"order-{n}" for n in ctx.rng.sample(range(ORDERS), 12)}
    gateways = _gateways(frozenset(declined))
    steps: dict[str, Any] = {name: tracing.batch_step(100) for name in tracing.SERVICES}
    steps["billing"] = ctx.exercise.billing_step
    trace = tracing.run(
        ctx.url, ctx.key("flow"), orders=ORDERS, interval=interval, steps=steps,
        gateways=gateways,
    )  # fmt: skip
    return trace, gateways, declined


def _trace(ctx: CheckContext, slow: str, trap: str, number: int) -> Any:
    gateways = _gateways(frozenset())
    steps: dict[str, Any] = {name: tracing.batch_step(100) for name in tracing.SERVICES}
    steps[slow] = tracing.batch_step(1)  # one order per call: it cannot keep up
    gateways[slow] = tracing.Gateway(0.004)
    gateways[trap] = tracing.Gateway(0.015)  # slow to handle, but in batches: never queues
    return tracing.run(
        ctx.url, ctx.key(f"trace-{number}"), orders=TRACE_ORDERS, interval=INTERVAL,
        steps=steps, gateways=gateways,
    )  # fmt: skip


@check(points=3, hint="time to converge per order; its slowest 1%; waiting + handling per service")
def finds_the_hot_spot(ctx: CheckContext) -> None:
    """On three traces, each with another slow service, hot_spot() names the slow one."""
    suspects = ["inventory", "billing", "courier"]
    ctx.rng.shuffle(suspects)
    wrong = []
    for number, slow in enumerate(suspects):
        trap = suspects[(number + 1) % len(suspects)]
        trace = _trace(ctx, slow, trap, number)
        before = trace.copy()
        answer = ctx.exercise.hot_spot(trace)
        assert trace.equals(before), "hot_spot() modified the trace"
        if answer != slow:
            wrong.append(f"said {answer!r} where {slow!r} queues (and {trap!r} is slow per hop)")
    assert not wrong, f"{len(wrong)} of 3 traces: " + "; ".join(wrong)


@check(points=3, hint="every order charged once, one answering event each (event.follow), acked")
def every_order_charged_once(ctx: CheckContext) -> None:
    """Each order is charged once, answered once with the right type, and acknowledged."""
    trace, gateways, declined = _flow(ctx)
    charged = gateways["billing"].handled
    orders = {f"order-{n}" for n in range(ORDERS)}
    twice = sorted(o for o, n in charged.items() if n > 1)
    missing = sorted(orders - set(charged))
    assert not twice, f"{len(twice)} orders charged more than once, e.g. {twice[:3]}"
    assert not missing, f"{len(missing)} orders never charged, e.g. {missing[:3]}"
    client = ctx.client()
    answers: Counter[str] = Counter()
    wrong = []
    for _, fields in client.xrange(ctx.key("flow") + ":billing:out"):
        name = str(json.loads(fields.get("data", "{}")).get("order"))
        answers[name] += 1
        expected = "PaymentDeclined" if name in declined else "PaymentCaptured"
        if fields.get("type") != expected:
            wrong.append(name)
    many = sorted(str(o) for o, n in answers.items() if n > 1)
    assert not many, f"{len(many)} orders answered more than once, e.g. {many[:3]}"
    assert set(answers) == orders, f"{len(orders - set(answers))} orders never answered"
    assert not wrong, f"{len(wrong)} orders answered with the wrong type, e.g. {wrong[:3]}"
    pending = int(client.xpending(ctx.key("flow") + ":billing", "billing")["pending"])
    assert pending == 0, f"{pending} billing entries never acknowledged"
    assert trace["correlationid"].nunique() == ORDERS, "some orders left the trace"


@check(points=4, hint="each gateway call costs the same whatever its size: batch the orders")
def p99_meets_the_target(ctx: CheckContext) -> None:
    """With an order every 2 ms, the p99 time to converge is within TARGET."""
    trace, _, _ = _flow(ctx)
    p99 = tracing.p99(trace)
    target = ctx.exercise.TARGET
    assert p99 <= target, (
        f"p99 time to converge is {p99 * 1000:.0f} ms (target {target * 1000:.0f})"
    )


@check(points=2, hint="batches grow with the queue: read up to max_batch at a time", stretch=True)
def p99_at_twice_the_rate(ctx: CheckContext) -> None:
    """Stretch: with an order every 1 ms (twice the rate), the p99 is still within TARGET."""
    trace, _, _ = _flow(ctx, interval=INTERVAL / 2)
    p99 = tracing.p99(trace)
    assert p99 <= TARGET, f"p99 time to converge is {p99 * 1000:.0f} ms at 1,000 orders/s"
