"""Graded checks for lab 07 (saga with compensation): 8 points.

Workload (seeded): 60 orders. Inventory is out of stock for about 15% of
them, billing declines about 30% of the payments, and every event and reply is
delivered twice with probability 0.3 (``eventlab.faults.duplicate_burst``).
The grader runs the saga (your ``decide``), inventory, billing and the order
service on two streams of the real broker; ``eventlab.checker.one_terminal_state``
judges the outcome.
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import pandas as pd

from eventlab import _labkit as kit
from eventlab import checker, faults
from eventlab.envelope import Event
from eventlab.grading import CheckContext, check

SEED = 707
ORDERS = 60
TERMINAL = {"OrderConfirmed", "OrderCancelled"}


class _Saga:
    """The runtime around the learner's ``decide``: orchestrator plus three services."""

    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx
        self.decide = ctx.exercise.decide
        self.client = ctx.client()
        self.events = ctx.key("saga") + ":events"
        self.commands = ctx.key("saga") + ":commands"
        self.state_key = ctx.key("saga") + ":state"
        self.ledger = ctx.key("saga") + ":ledger"
        self.dup = random.Random(ctx.seed + 1)  # noqa: S311 - seeded faults
        for stream, group in ((self.events, "saga"), (self.commands, "services")):
            self.client.xgroup_create(stream, group, id="0", mkstream=True)
        self.orders = [f"order-{n}" for n in range(ORDERS)]
        self.in_stock = {o: ctx.rng.random() > 0.15 for o in self.orders}
        self.pays = {o: ctx.rng.random() > 0.3 for o in self.orders}
        self.transitions: list[tuple[str, str]] = []
        # Per order, what happened in order: events the saga took in, commands it sent.
        self.log: dict[str, list[str]] = {o: [] for o in self.orders}
        placed = [
            Event(type="OrderPlaced", source="orders", subject=o, data={"order": o})
            for o in self.orders
        ]
        kit.publish_all(
            self.client, self.events, faults.duplicate_burst(placed, fraction=0.3, seed=ctx.seed)
        )
        self.run()

    def run(self) -> None:
        quiet = 0
        for _ in range(400):
            busy = self.saga_step() + self.services_step()
            quiet = 0 if busy else quiet + 1
            if quiet >= 2:  # both streams drained twice in a row
                return
        raise AssertionError("the saga never settled (commands keep flowing: a loop?)")

    def saga_step(self) -> int:
        batch = kit.read_new(self.client, self.events, "saga", "orchestrator", count=50)
        for entry_id, fields in batch:
            event = Event.from_fields(fields)
            order = event.data["order"]
            state = self.client.hget(self.state_key, order)
            new_state, commands = self.decide(state, event)
            self.log[order].append(event.type)
            self.log[order].extend(kind for kind, _ in commands)
            pipe = self.client.pipeline(transaction=True)
            if new_state != state and new_state is not None:
                pipe.hset(self.state_key, order, new_state)
            for kind, data in commands:
                command = event.follow(
                    type=kind, source="saga", data={**dict(data), "order": order}
                )
                pipe.xadd(self.commands, command.to_fields())  # type: ignore[arg-type]
            pipe.xack(self.events, "saga", entry_id)
            pipe.execute()
        return len(batch)

    def services_step(self) -> int:
        batch = kit.read_new(self.client, self.commands, "services", "services", count=50)
        for entry_id, fields in batch:
            command = Event.from_fields(fields)
            order = command.data["order"]
            reply = self.serve(command, order)
            pipe = self.client.pipeline(transaction=True)
            if reply is not None:
                copies = 2 if self.dup.random() < 0.3 else 1  # at-least-once delivery
                for _ in range(copies):
                    pipe.xadd(self.events, reply.to_fields())  # type: ignore[arg-type]
            pipe.xack(self.commands, "services", entry_id)
            pipe.execute()
        return len(batch)

    def serve(self, command: Event, order: str) -> Event | None:
        kind = command.type
        if kind in {"ConfirmOrder", "CancelOrder"}:
            self.transitions.append(
                (order, "OrderConfirmed" if kind == "ConfirmOrder" else "OrderCancelled")
            )
            return None
        if kind == "ReserveStock":
            self.client.hincrby(self.ledger, f"{order}:reserve", 1)
            reply = "StockReserved" if self.in_stock[order] else "OutOfStock"
        elif kind == "ChargePayment":
            self.client.hincrby(self.ledger, f"{order}:charge", 1)
            reply = "PaymentCharged" if self.pays[order] else "PaymentFailed"
        elif kind == "ReleaseStock":
            self.client.hincrby(self.ledger, f"{order}:release", 1)
            reply = "StockReleased"
        else:
            raise AssertionError(f"decide() sent an unknown command {kind!r}")
        return command.follow(type=reply, source="services", data={"order": order})

    def count(self) -> Counter[str]:
        return Counter({k: int(v) for k, v in self.client.hgetall(self.ledger).items()})

    def terminal_verdict(self) -> Any:
        frame = pd.DataFrame(self.transitions, columns=["aggregate", "state"])
        return checker.one_terminal_state(frame, terminal=TERMINAL, aggregates=self.orders)


@check(points=4, hint="ignore events that do not fit the current state (duplicates!)")
def one_terminal_state_per_order(ctx: CheckContext) -> None:
    """Every order ends confirmed or cancelled, exactly once, despite duplicates."""
    saga = _Saga(ctx)
    verdict = saga.terminal_verdict()
    assert verdict.valid, (
        f"{verdict.counts['none']} orders never ended, {verdict.counts['many']} ended more "
        f"than once (e.g. {(verdict.offending['none'] + verdict.offending['many'])[:3]})"
    )


@check(points=3, hint="PaymentFailed must release the stock, then cancel once it is released")
def failed_payment_compensated(ctx: CheckContext) -> None:
    """A declined payment releases the reserved stock exactly once, and cancels the order."""
    saga = _Saga(ctx)
    ledger = saga.count()
    ended = dict(saga.transitions)
    wrong = []
    for order in saga.orders:
        if not (saga.in_stock[order] and not saga.pays[order]):
            continue
        moved = (ledger[f"{order}:reserve"], ledger[f"{order}:release"])
        if moved != (1, 1) or ended.get(order) != "OrderCancelled":
            wrong.append(order)
    assert not wrong, f"{len(wrong)} declined orders kept their stock or were not cancelled"
    leaked = [o for o in saga.orders if not saga.in_stock[o] and ledger[f"{o}:release"]]
    assert not leaked, f"{len(leaked)} orders released stock that was never reserved"
    early = [
        o for o in saga.orders
        if saga.in_stock[o] and not saga.pays[o]
        and kit.out_of_order(saga.log[o], first="StockReleased", then="CancelOrder")
    ]  # fmt: skip
    assert not early, (
        f"{len(early)} declined orders cancelled before the stock release was confirmed "
        f"(CancelOrder sent before StockReleased arrived), e.g. {early[0]}: {saga.log[early[0]]}"
    )


@check(points=1, hint="StockReserved -> ChargePayment; PaymentCharged -> ConfirmOrder")
def happy_path_confirmed(ctx: CheckContext) -> None:
    """Orders with stock and an accepted payment are confirmed, charged once."""
    saga = _Saga(ctx)
    ledger = saga.count()
    ended = dict(saga.transitions)
    happy = [o for o in saga.orders if saga.in_stock[o] and saga.pays[o]]
    wrong = [o for o in happy if ended.get(o) != "OrderConfirmed" or ledger[f"{o}:charge"] != 1]
    assert not wrong, f"{len(wrong)} of {len(happy)} good orders not confirmed after one charge"


@check(points=2, hint="a duplicate event must send no command at all", stretch=True)
def no_command_wasted(ctx: CheckContext) -> None:
    """Stretch: exactly the commands each order needs, none repeated for a duplicate event."""
    saga = _Saga(ctx)
    sent = sum(saga.count().values()) + len(saga.transitions)
    needed = 0
    for order in saga.orders:
        if not saga.in_stock[order]:
            needed += 2  # reserve, cancel
        elif not saga.pays[order]:
            needed += 4  # reserve, charge, release, cancel
        else:
            needed += 3  # reserve, charge, confirm
    assert sent == needed, f"the saga sent {sent} commands where {needed} were needed"
