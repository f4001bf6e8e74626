"""Graded checks for lab 04a (retries and dead letters): 12 points.

Workload (seeded): 60 ``OrderPaid`` events, shuffled. 12 fail transiently once
or twice, 4 fail transiently every time ("billing unreachable"), 4 are
permanent failures (a validation error the team fixes later), 4 are malformed
entries that do not decode. The grader's delivery loop reads, handles,
calls the learner's ``on_failure`` and redelivers idle pending entries. Fault:
consumer processes die in turn before the 1st, 2nd, … command the learner's
code sends (the grader's fault proxy counts them on every connection; the
runtime's own steps are one ignored script), so a dead letter and its ack sent
as two steps are cut apart in either order; the next consumer carries on.
"""

from __future__ import annotations

import json
import time
from collections import Counter

from eventlab import _labkit as kit
from eventlab import broker, tracing
from eventlab.envelope import Event
from eventlab.grading import CheckContext, check
from eventlab.streams import dlq_key

SEED = 404
GROUP = "billing"
IDLE = 0.02  # seconds before a failed entry is redelivered
CRASH_POSITIONS = 6  # consumers killed before the learner's 1st … 6th command: every gap, twice
# The runtime's own step (apply the effect and ack): one script, never counted
# as the learner's, so crashes land only between the learner's commands.
_APPLY = (
    "redis.call('HINCRBY', KEYS[1], ARGV[1], 1) "
    "return redis.call('XACK', KEYS[2], ARGV[2], ARGV[3])"
)


class _Lab:
    """One run of the workload against the learner's on_failure."""

    def __init__(self, ctx: CheckContext) -> None:
        self.ctx = ctx
        self.ex = ctx.exercise
        self.client = ctx.client()
        self.stream = ctx.key("payments")
        self.effects = self.stream + ":effects"
        self.attempts: Counter[str] = Counter()
        self.fixed = False
        plans = ["ok"] * 36 + ["transient"] * 12 + ["stuck"] * 4 + ["bad"] * 4
        ctx.rng.shuffle(plans)
        self.plan: dict[str, str] = {}
        self.fails: dict[str, int] = {}
        entries: list[dict[str, str]] = []
        for number, plan in enumerate(plans):
            order = f"order-{number}"
            self.plan[order] = plan
            self.fails[order] = ctx.rng.choice([1, 2])
            event = Event(type="OrderPaid", source="billing", data={"order": order, "amount": 10})
            entries.append(event.to_fields())
        for number in range(4):  # no type, no source: cannot decode into an event
            entries.insert(ctx.rng.randrange(len(entries)), {"id": f"bad-{number}", "data": "{"})
        self.client.xgroup_create(self.stream, GROUP, id="0", mkstream=True)
        ids = [str(self.client.xadd(self.stream, fields)) for fields in entries]  # type: ignore[arg-type]
        self.fields = dict(zip(ids, entries, strict=True))
        self.order_of = {
            i: json.loads(f["data"])["order"] for i, f in self.fields.items() if "type" in f
        }

    def process(self, entry_id: str, fields: dict[str, str]) -> None:
        event = Event.from_fields(fields)  # EnvelopeError: permanent
        order = event.data["order"]
        plan = self.plan[order]
        self.attempts[order] += 1
        if plan == "transient" and self.attempts[order] <= self.fails[order]:
            raise self.ex.TransientError("billing timed out")
        if plan == "stuck":
            raise self.ex.TransientError("billing unreachable")
        if plan == "bad" and not self.fixed:
            raise ValueError("amount must be in cents, got a float")
        self.client.eval(_APPLY, 2, self.effects, self.stream, order, GROUP, entry_id)

    def deliver(self, *, seconds: float = 1.0) -> None:
        deadline = time.monotonic() + seconds  # ample: a retry needs 3 rounds of ~IDLE
        while time.monotonic() < deadline:
            batch = kit.read_new(self.client, self.stream, GROUP, "worker", count=50)
            batch += kit.reclaim_all(self.client, self.stream, GROUP, "worker", min_idle=IDLE)
            if not batch:
                if kit.pending_count(self.client, self.stream, GROUP) == 0:
                    return
                time.sleep(IDLE)
                continue
            for entry_id, fields in batch:
                try:
                    self.process(entry_id, fields)
                except Exception as error:  # noqa: BLE001 - every failure goes to the learner
                    self.fail(entry_id, fields, error)
            if self.hopeless():
                return

    def hopeless(self) -> bool:
        """Whether every pending entry was delivered well past MAX_DELIVERIES (retried forever)."""
        pending = self.client.xpending_range(self.stream, GROUP, "-", "+", 1000)
        give_up = self.ex.MAX_DELIVERIES + 2
        return bool(pending) and all(int(p["times_delivered"]) > give_up for p in pending)

    def fail(self, entry_id: str, fields: dict[str, str], error: Exception) -> None:
        info = self.client.xpending_range(self.stream, GROUP, entry_id, entry_id, 1)
        deliveries = int(info[0]["times_delivered"]) if info else 1
        decision = self.ex.on_failure(
            self.client, self.stream, GROUP, entry_id, dict(fields),
            error=error, deliveries=deliveries,
        )  # fmt: skip
        assert decision in {"retry", "dead"}, f"on_failure returned {decision!r}"

    def done(self) -> dict[str, int]:
        return {k: int(v) for k, v in self.client.hgetall(self.effects).items()}

    def dead(self) -> list[dict[str, str]]:
        return [fields for _, fields in kit.entries_in(self.client, dlq_key(self.stream))]

    def of_plan(self, plan: str) -> set[str]:
        return {order for order, p in self.plan.items() if p == plan}


@check(points=3, hint="retry a TransientError while deliveries < MAX_DELIVERIES", timeout=15)
def transient_errors_retried(ctx: CheckContext) -> None:
    """Events that fail once or twice with a transient error are applied once, not dead."""
    lab = _Lab(ctx)
    lab.deliver()
    done = lab.done()
    healthy = lab.of_plan("transient") | lab.of_plan("ok")
    missing = sorted(o for o in healthy if done.get(o) != 1)
    assert not missing, f"{len(missing)} retryable events not applied exactly once: {missing[:3]}"
    orders = {lab.order_of.get(f.get("original_id", "")) for f in lab.dead()}
    wrongly = sorted(str(o) for o in orders & healthy)
    assert not wrongly, f"retryable events dead-lettered: {wrongly[:3]}"


@check(points=3, hint="XADD to dlq_key(stream) the original fields + reason, then XACK", timeout=15)
def poison_dead_lettered_with_reason(ctx: CheckContext) -> None:
    """Poison events land in the dead-letter stream once, with reason, after the right count."""
    lab = _Lab(ctx)
    lab.deliver()
    dead = lab.dead()
    by_id = Counter(f.get("original_id") for f in dead)
    poison = {i for i, o in lab.order_of.items() if lab.plan[o] in {"stuck", "bad"}}
    poison |= set(lab.fields) - set(lab.order_of)
    assert set(by_id) == poison, (
        f"dead letters hold {len(set(by_id) & poison)} of {len(poison)} poison entries "
        f"(and {len(set(by_id) - poison)} others); original_id must be the entry id"
    )
    twice = [i for i, n in by_id.items() if n > 1]
    assert not twice, f"{len(twice)} entries dead-lettered more than once"
    for fields in dead:
        original = lab.fields[fields["original_id"]]
        lost = [k for k, v in original.items() if fields.get(k) != v]
        assert not lost, f"dead letter lost original fields {lost}"
        assert fields.get("reason", "").strip(), "a dead letter has no reason"
        assert fields.get("error"), "a dead letter does not name the error type"
        assert fields.get("group") == GROUP, "a dead letter does not name the group"
        order = lab.order_of.get(fields["original_id"])
        want = lab.ex.MAX_DELIVERIES if order and lab.plan[order] == "stuck" else 1
        assert fields.get("deliveries") == str(want), (
            f"dead-lettered after {fields.get('deliveries')} deliveries, expected {want} "
            "(permanent errors at once, transient ones after MAX_DELIVERIES)"
        )


def _doomed(lab: _Lab) -> None:
    """Deliver in a forked consumer (the fault proxy kills it where the sweep says)."""
    lab.client = broker.client_for_url(lab.ctx.url, decode_responses=True)
    lab.deliver()


def _order_hint(runs: list[list[str]]) -> str:
    """Which order the learner's commands came in (the fault proxy's command log)."""
    sent = max(runs, key=len, default=[])
    if kit.out_of_order(sent, first="XADD", then="XACK"):
        return "; the entry is acked (XACK) before its dead letter is written (XADD)"
    return f"; your code sent {' then '.join(sent[:4]) or 'nothing'} for its first dead letters"


@check(points=2, hint="XADD the dead letter and XACK the entry in ONE MULTI/EXEC", timeout=15)
def dead_letter_atomic_with_ack(ctx: CheckContext) -> None:
    """Consumers killed between any two commands of a dead letter lose and double nothing."""
    lab = _Lab(ctx)
    runs: list[list[str]] = []
    killed = kit.sweep(
        _doomed, lab, positions=range(1, CRASH_POSITIONS + 1), timeout=5.0,
        ignore_scripts=(_APPLY,), commands=runs,
    )  # fmt: skip
    lab.deliver()
    counts = Counter(f.get("original_id") for f in lab.dead())
    poison = {i for i, o in lab.order_of.items() if lab.plan[o] in {"stuck", "bad"}}
    poison |= set(lab.fields) - set(lab.order_of)
    twice = sorted(str(i) for i, n in counts.items() if n > 1)
    lost = sorted(poison - set(counts))
    assert counts, "nothing was dead-lettered"
    assert not (twice or lost), (  # noqa: PT018 - one line says both
        f"{len(twice)} entries dead-lettered twice, {len(lost)} poison entries acked with no "
        f"dead letter, after consumers were killed between commands ({len(killed)} kills)"
        + _order_hint(runs)
    )
    left = kit.pending_count(lab.client, lab.stream, GROUP)
    assert left == 0, f"{left} entries still pending"


@check(points=2, hint="a dead-lettered entry must also be acknowledged", timeout=15)
def pending_list_drains(ctx: CheckContext) -> None:
    """Nothing stays in the pending list once every event was applied or dead-lettered."""
    lab = _Lab(ctx)
    lab.deliver()
    left = kit.pending_count(lab.client, lab.stream, GROUP)
    assert left == 0, f"{left} entries stuck in the pending list"


@check(points=2, hint="XADD the original fields back and XDEL the dead letter in one MULTI")
def redrive_is_idempotent(ctx: CheckContext) -> None:
    """Redrive moves chosen dead letters back once; after the fix each is applied once."""
    lab = _Lab(ctx)
    lab.deliver()
    bad = sorted(i for i, o in lab.order_of.items() if lab.plan[o] == "bad")
    lab.fixed = True
    moved = lab.ex.redrive(lab.client, lab.stream, original_ids=bad)
    assert moved == len(bad), f"redrive moved {moved}, expected {len(bad)}"
    again = lab.ex.redrive(lab.client, lab.stream, original_ids=bad)
    assert again == 0, f"a second redrive moved {again} again (must be idempotent)"
    lab.deliver()
    done = lab.done()
    wrong = [o for o in lab.of_plan("bad") if done.get(o) != 1]
    assert not wrong, f"{len(wrong)} redriven events not applied exactly once"
    left = len(lab.dead())
    assert left == 8, f"{left} dead letters left, expected 8 (only the chosen ones move)"


@check(points=2, hint="redrive in batches: one MULTI moves many dead letters", stretch=True)
def redrive_in_few_round_trips(ctx: CheckContext) -> None:
    """Stretch: 300 dead letters redriven in at most 10 round trips, each moved once."""
    client = ctx.client()
    stream = ctx.key("payments")
    dead = []
    for number in range(300):
        original = Event(type="OrderPaid", source="billing", data={"order": f"o-{number}"})
        fields = {**original.to_fields(), "reason": "permanent error: bad amount",
                  "error": "ValueError", "deliveries": "1", "original_id": f"0-{number + 1}",
                  "group": GROUP}  # fmt: skip
        dead.append(fields)
    pipe = client.pipeline(transaction=False)
    for fields in dead:
        pipe.xadd(dlq_key(stream), fields)  # type: ignore[arg-type]
    pipe.execute()
    counted = tracing.counted_client(ctx.url)
    moved = ctx.exercise.redrive(counted, stream)
    trips = tracing.round_trips(counted)
    assert moved == len(dead), f"redrive moved {moved} of {len(dead)}"
    back = [fields.get("id") for _, fields in kit.entries_in(client, stream)]
    assert sorted(back) == sorted(f["id"] for f in dead), "not every dead letter is back, once"
    assert client.xlen(dlq_key(stream)) == 0, "dead letters left behind"
    assert trips <= 10, f"{trips} round trips to redrive {len(dead)} dead letters"
