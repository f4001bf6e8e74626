"""Graded checks for lab 11 (reconciliation under chaos): 8 points.

Chaos (seeded ``eventlab.faults.schedule`` run by ``eventlab.faults.Nemesis``,
recorded in an ``eventlab.history.History``): while 60 orders' events are
produced, the projector's connection goes through an ``eventlab.faults.Proxy``
that is partitioned for a while, the projector acks some events without
applying them (a crash between ack and write), and a lagging replica writes
stale rows back; an operator also deletes a few rows and leaves a stray one.
Then the learner's ``reconcile`` runs through the proxy with added latency, and
``eventlab.checker.watch_convergence`` gives the verdict.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from eventlab import _labkit as kit
from eventlab import checker, faults, tracing
from eventlab.envelope import Event
from eventlab.grading import CheckContext, check
from eventlab.history import History

SEED = 1111
ORDERS = 60
GROUP = "projector"


class _Chaos:
    """Produce, project under a nemesis schedule, then leave a drifted view behind."""

    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx
        self.client = ctx.client()
        self.stream = ctx.key("orders")
        self.view = self.stream + ":view"
        self.client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        self.proxy = faults.Proxy(ctx.url, seed=ctx.seed)
        self.history = History()
        self.dropping = threading.Event()
        self.stop = threading.Event()
        try:
            self._run()
        except BaseException:
            self.proxy.close()
            raise

    def _events(self) -> list[Event]:
        lives = []
        for n in range(ORDERS):
            order = f"order-{n}"
            steps = [
                "OrderPlaced",
                *self.ctx.rng.choice(
                    [[], ["OrderPaid"], ["OrderPaid", "OrderShipped"], ["OrderCancelled"]]
                ),
            ]
            lives.append(
                [
                    Event(
                        type=kind,
                        source="orders",
                        subject=order,
                        data={"order": order, "version": version},
                    )
                    for version, kind in enumerate(steps, start=1)
                ]
            )
        events: list[Event] = []
        while any(lives):
            life = self.ctx.rng.choice([life for life in lives if life])
            events.append(life.pop(0))
        return events

    def _project(self) -> None:
        client = kit.crashing_client(self.proxy.url, crash_at=0)
        status = {"OrderPlaced": "placed", "OrderPaid": "paid", "OrderShipped": "shipped",
                  "OrderCancelled": "cancelled"}  # fmt: skip
        while not self.stop.is_set():
            batch = kit.read_new(client, self.stream, GROUP, "projector", count=10)
            for entry_id, fields in batch:
                data = json.loads(fields["data"])
                pipe = client.pipeline(transaction=True)
                if not self.dropping.is_set():  # a crash after ack loses the write
                    row = {"status": status[fields["type"]], "version": data["version"]}
                    pipe.hset(self.view, data["order"], json.dumps(row))
                pipe.xack(self.stream, GROUP, entry_id)
                pipe.execute()
            if not batch:
                time.sleep(0.005)

    def _stale_replica(self) -> None:
        rows = self.client.hgetall(self.view)
        for order in self.ctx.rng.sample(sorted(rows), min(4, len(rows))):
            self.client.hset(self.view, order, json.dumps({"status": "placed", "version": 1}))

    def _drop(self) -> Any:
        self.dropping.set()
        return self.dropping.clear

    def _run(self) -> None:
        projector = threading.Thread(target=self._project, daemon=True)
        projector.start()
        plan = faults.schedule(
            seed=self.ctx.seed, faults=["partition", "drop", "stale"], cycles=3, in_order=True,
            warmup=0.1, fault_seconds=(0.1, 0.2), gap_seconds=(0.05, 0.1), quiesce=0.1,
        )  # fmt: skip
        nemesis = faults.Nemesis(
            plan,
            {"partition": lambda: self.proxy.partition(mode="hold"), "drop": self._drop,
             "stale": self._stale_replica},
            history=self.history,
        )  # fmt: skip
        nemesis.start()
        events = self._events()
        pause = plan.duration * 0.8 / len(events)
        for event in events:
            self.client.xadd(self.stream, event.to_fields())  # type: ignore[arg-type]
            time.sleep(pause)
        nemesis.join(plan.duration + 5)
        settled = kit.wait_until(
            lambda: (
                self.client.xinfo_groups(self.stream)[0]["lag"] == 0
                and kit.pending_count(self.client, self.stream, GROUP) == 0
            ),
            timeout=5.0,
        )
        self.stop.set()
        projector.join(5.0)
        assert settled, "grader fault: the projector did not catch up after heal"
        rows = sorted(self.client.hgetall(self.view))
        self.client.hdel(self.view, *self.ctx.rng.sample(rows, 3))  # an operator's mistake
        self.client.hset(self.view, "order-ghost", json.dumps({"status": "paid", "version": 2}))

    def read_view(self) -> dict[str, Any]:
        return {k: json.loads(v) for k, v in self.client.hgetall(self.view).items()}

    def truth(self) -> dict[str, Any]:
        return self.ctx.exercise.fold_log(self.client, self.stream)

    def reconcile(self) -> int:
        repair = kit.crashing_client(self.proxy.url, crash_at=0)
        try:
            with self.proxy.latency(0.002):  # the repair itself runs over a slow network
                return int(self.ctx.exercise.reconcile(repair, self.stream, self.view))
        finally:
            repair.close()

    def close(self) -> None:
        self.proxy.close()


@check(points=4, hint="HSET every missing or wrong row from fold_log; HDEL rows not in the log")
def drift_repaired_after_chaos(ctx: CheckContext) -> None:
    """After heal, one reconcile run makes the view agree with the log (checker verdict)."""
    chaos = _Chaos(ctx)
    try:
        before = checker.diff(chaos.read_view(), chaos.truth())
        assert before, "grader fault: the chaos left no drift to repair"
        chaos.reconcile()
        verdict = checker.watch_convergence(chaos.read_view, chaos.truth, within=0.3)
        assert verdict.valid, (
            f"{verdict.counts['disagreeing_at_end']} of {len(before)} drifted orders still "
            f"disagree with the log, e.g. {verdict.offending['disagreeing'][:3]}"
        )
    finally:
        chaos.close()


@check(points=2, hint="count every order you wrote or deleted, once")
def repairs_counted(ctx: CheckContext) -> None:
    """reconcile() returns exactly the number of orders that had drifted."""
    chaos = _Chaos(ctx)
    try:
        before = checker.diff(chaos.read_view(), chaos.truth())
        repaired = chaos.reconcile()
        assert repaired == len(before), f"reported {repaired} repairs, {len(before)} had drifted"
    finally:
        chaos.close()


@check(points=2, hint="write nothing when view and truth agree")
def second_run_is_a_no_op(ctx: CheckContext) -> None:
    """Run again right away, reconcile repairs nothing and leaves the view as it is."""
    chaos = _Chaos(ctx)
    try:
        chaos.reconcile()
        view = chaos.client.hgetall(chaos.view)
        again = chaos.reconcile()
        assert again == 0, f"the second run reported {again} repairs"
        assert chaos.client.hgetall(chaos.view) == view, "the second run changed the view"
    finally:
        chaos.close()


@check(
    points=2, hint="over a slow network: read the log once, the view once, write once", stretch=True
)
def repair_in_three_round_trips(ctx: CheckContext) -> None:
    """Stretch: a repair of a drifted view costs at most 3 round trips."""
    client = ctx.client()
    stream = ctx.key("orders")
    view = stream + ":view"
    for n in range(50):
        for version, kind in enumerate(["OrderPlaced", "OrderPaid"][: 1 + n % 2], start=1):
            event = Event(type=kind, source="orders", data={"order": f"o-{n}", "version": version})
            client.xadd(stream, event.to_fields())  # type: ignore[arg-type]
    client.hset(view, mapping={f"o-{n}": json.dumps({"status": "placed", "version": 1})
                               for n in range(0, 50, 3)})  # fmt: skip
    client.hset(view, "o-ghost", "{}")
    counted = tracing.counted_client(ctx.url)
    ctx.exercise.reconcile(counted, stream, view)
    trips = tracing.round_trips(counted)
    got = {k: json.loads(v) for k, v in client.hgetall(view).items()}
    assert not checker.diff(got, ctx.exercise.fold_log(client, stream)), "the view still drifts"
    assert trips <= 3, f"{trips} round trips for one repair"
