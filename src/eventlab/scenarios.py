"""Twelve seeded failure scenarios: run one, get its history and the checker's verdicts.

Each scenario is a function ``name(broker=None, *, seed=0, …) -> ScenarioResult``.
It builds its own streams (``{<namespace>:scn-<name>}``), injects its faults,
records a :class:`~eventlab.history.History`, and judges it with
:mod:`eventlab.checker`. ``result.expected`` says which verdicts the scenario is
*meant* to show valid or invalid (several exist to show data IS lost), and
``result.as_expected`` checks that it did. The same seed gives the same events,
the same faults and the same verdicts.

Scenarios that kill or restart the broker use the ``broker`` you pass (it will
be restarted, maybe without persistence — never pass one whose data you want)
or, by default, start a private broker and stop it afterwards. The others use
``broker`` or the managed broker from :func:`eventlab.broker.up`.

==================================  ===========================================
scenario                            shows
==================================  ===========================================
``consumer_kill_before_ack``        kill -9 after the effect, before the ack:
                                    redelivery → a second effect unless deduped
``handler_error_defaults``          faststream defaults leave a failed event
                                    pending for ever; the eventlab runtime retries
``poison_to_dlq``                   a poison event ends in ``<stream>:dlq``
``slow_handler_stolen``             a handler slower than ``min_idle`` is
                                    reclaimed: two deliveries, one effect
``broker_restart_no_persistence``   stream and group gone: the checker says lost
``kill9_rdb_vs_aof``                kill -9: RDB loses every recent write,
                                    AOF ``always`` loses none
``graceful_restart``                SHUTDOWN saves: nothing lost
``lost_publish_reply``              a reply lost in a one-way partition → retried
                                    publish → duplicate entry, one effect
``out_of_order_two_consumers``      one key's versions published shuffled, two
                                    consumers racing: versioned upsert no
                                    regression; last write wins: regressions
``latency_partition_heal``          convergence time of a projection after heal
``maxlen_trimming``                 MAXLEN trims what a stopped consumer never read
``group_after_events``              a group at ``$`` skips earlier events; at ``0`` not
==================================  ===========================================

Introduced in lessons 03 to 05 and 11; the grader runs them too.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from eventlab import _scenario_workers as workers
from eventlab import broker as broker_mod
from eventlab import checker, faults, streams
from eventlab.checker import Verdict
from eventlab.envelope import Event
from eventlab.history import History

__all__ = [
    "CRASH_SCENARIOS",
    "SCENARIOS",
    "ScenarioResult",
    "broker_restart_no_persistence",
    "consumer_kill_before_ack",
    "graceful_restart",
    "group_after_events",
    "handler_error_defaults",
    "kill9_rdb_vs_aof",
    "latency_partition_heal",
    "lost_publish_reply",
    "maxlen_trimming",
    "out_of_order_two_consumers",
    "per_key_inversions",
    "poison_to_dlq",
    "run",
    "slow_handler_stolen",
]

_NO_RETRY = Retry(NoBackoff(), 0)
_WAIT = 30.0  # seconds a scenario waits for a condition: generous, a loaded CI machine is slow
_REREAD_PENDING_EVERY = 10  # loops (~0.5 s at 50 ms blocks) between re-reads of own pending
_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class ScenarioResult:
    """What a scenario did and what the checkers concluded.

    Attributes:
        name: The scenario.
        seed: The seed it ran with.
        history: Every operation and fault, in order.
        verdicts: Checker name → verdict.
        expected: Verdict name → the validity the scenario is meant to show.
        facts: Measured numbers (lost per mode, convergence seconds, stream length…).
    """

    name: str
    seed: int
    history: History
    verdicts: dict[str, Verdict]
    expected: dict[str, bool]
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def as_expected(self) -> bool:
        """Whether every verdict came out as the scenario means to show."""
        return all(self.verdicts[name].valid == valid for name, valid in self.expected.items())

    def outcome(self) -> dict[str, bool]:
        """Return verdict name → valid (compare two runs of one seed with this)."""
        return {name: v.valid for name, v in self.verdicts.items()}

    def summary(self) -> pd.DataFrame:
        """Return one row per verdict: verdict, valid, expected, and its counts as text."""
        return pd.DataFrame(
            [
                {
                    "verdict": name,
                    "valid": v.valid,
                    "expected": self.expected.get(name),
                    "counts": ", ".join(f"{k}={n}" for k, n in v.counts.items()),
                }
                for name, v in self.verdicts.items()
            ]
        )

    def __str__(self) -> str:
        """Several lines: the scenario, then one line per verdict."""
        lines = [f"scenario {self.name} (seed {self.seed}): as expected = {self.as_expected}"]
        lines.extend(f"  {name}: {verdict}" for name, verdict in self.verdicts.items())
        return "\n".join(lines)


# -- shared helpers -------------------------------------------------------------------


def _rng(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311 - seeded scenarios, not cryptography


def _events(
    rng: random.Random, n: int, *, type_: str = "OrderPlaced", aggregates: int = 10
) -> list[Event]:
    """Seeded events: the same seed gives the same ids, so offending ids repeat too."""
    return [
        Event(
            type=type_,
            source="scenario",
            id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            subject=f"order-{i % aggregates}",
            data={"n": i},
        )
        for i in range(n)
    ]


def _stream(name: str, client: redis.Redis) -> str:
    key = streams.stream_key(f"scn-{name}")
    stale = list(client.scan_iter(match=f"{key}*"))
    if stale:
        client.delete(*stale)
    return key


def _publish(
    client: redis.Redis,
    stream: str,
    events: list[Event],
    history: History,
    *,
    process: str = "producer",
    maxlen: int | None = None,
) -> None:
    for event in events:
        with history.op(process, "enqueue", event.id):
            streams.publish(client, stream, event, maxlen=maxlen, approximate=False)


def _drain(
    client: redis.Redis,
    stream: str,
    group: str,
    consumer: str,
    history: History,
    *,
    count: int = 50,
    limit: int | None = None,
    position: str = ">",
    naive: bool = True,
    idempotent: bool = True,
) -> int:
    """Read, record, apply effects and ack until the group has nothing more (or ``limit``)."""
    done = 0
    while limit is None or done < limit:
        want = count if limit is None else min(count, limit - done)
        batch = workers.read(client, stream, group, consumer, count=want, position=position)
        if not batch:
            return done
        ids = [fields.get("id", entry) for entry, fields in batch]
        history.ok(consumer, "dequeue", ids)
        workers.apply_effects(client, stream, ids, naive=naive, idempotent=idempotent)
        client.xack(stream, group, *[entry for entry, _ in batch])
        done += len(batch)
    return done


def _effects(client: redis.Redis, stream: str, *, naive: bool) -> list[str]:
    key = workers.naive_key(stream) if naive else workers.idempotent_key(stream)
    return [str(x) for x in client.lrange(key, 0, -1)]


def _variant(history: History, tag: str) -> pd.DataFrame:
    """The records of processes named ``…-<tag>`` (one variant of a scenario)."""
    frame = history.frame()
    keep = frame["process"].astype(str).str.endswith(f"-{tag}")
    out: pd.DataFrame = frame[keep]
    return out


@contextlib.contextmanager
def _private_broker(
    broker: broker_mod.Broker | None, persistence: broker_mod.Persistence
) -> Iterator[broker_mod.Broker]:
    """The broker to crash: the one given (restarted into ``persistence``) or a private one.

    Never one the kit did not start: with ``REDIS_URL`` set, ``up()`` returns that
    broker (maybe a whole room's), and these scenarios restart and flush theirs.
    """
    what = "a scenario that restarts and flushes its broker"
    if broker is not None:
        faults.require_managed(broker, what)
        if broker.persistence != persistence:
            broker.restart(persistence=persistence)
        yield broker
        return
    folder = tempfile.mkdtemp(prefix="eventlab-scenario-")
    handle = broker_mod.up(state=folder, port=0, persistence=persistence)
    if not handle.managed:
        shutil.rmtree(folder, ignore_errors=True)
        faults.require_managed(handle, what)
    try:
        yield handle
    finally:
        broker_mod.down(state=folder)
        shutil.rmtree(folder, ignore_errors=True)


def _shared(broker: broker_mod.Broker | None) -> broker_mod.Broker:
    return broker if broker is not None else broker_mod.up()


# -- the scenarios --------------------------------------------------------------------


def consumer_kill_before_ack(
    broker: broker_mod.Broker | None = None, *, seed: int = 0, events: int = 200, batch: int = 10
) -> ScenarioResult:
    """Kill -9 a consumer process after its effect and before its ack; recover by reclaiming.

    A worker process (``eventlab.processes.spawn``) applies each batch's effect,
    then acks it; after a seeded number of events it hangs between effect and
    ack and is SIGKILLed. A second consumer reclaims the dead one's pending
    entries (XAUTOCLAIM) and drains the rest. Nothing is lost (total-queue
    valid), but the reclaimed batch is processed twice: the naive effect
    counts it twice (exactly-once INVALID), the idempotent one once (valid).
    """
    from eventlab import processes  # noqa: PLC0415 - spawning needs it only here

    rng = _rng(seed)
    handle = _shared(broker)
    client = handle.client()
    stream = _stream("kill-before-ack", client)
    group = "billing"
    streams.create_group(client, stream, group, start="0")
    history = History()
    _publish(client, stream, _events(rng, events), history)
    crash_after = rng.randrange(events // 4, events // 2) // batch * batch + batch
    folder = Path(tempfile.mkdtemp(prefix="eventlab-scenario-"))
    log = folder / "worker.jsonl"
    proc = processes.spawn(
        "eventlab._scenario_workers:crashing_consumer",
        args=[stream, group, "worker-1", str(log), str(crash_after), str(batch)],
        # in the environment, not argv: a command line (and any password in it) shows in `ps`
        env={workers.URL_ENV: handle.url},
        name="crashing-consumer",
    )
    try:
        proc.wait_ready(timeout=20)
        faults.kill_consumer(proc, history=history)
    finally:
        if proc.alive:
            proc.kill()
    history.extend(History.read_jsonl(log).rows())  # merge the worker's records
    shutil.rmtree(folder, ignore_errors=True)
    stranded = streams.pending_summary(client, stream, group).count
    # the recovery consumer: claim what the dead one held, then read the rest
    claimed: Any = client.xautoclaim(stream, group, "worker-2", min_idle_time=0, count=events)
    entries = [(str(e), dict(f)) for e, f in claimed[1] if f is not None]
    ids = [fields.get("id", entry) for entry, fields in entries]
    if ids:
        history.ok("worker-2", "dequeue", ids)
        workers.apply_effects(client, stream, ids, naive=True, idempotent=True)
        client.xack(stream, group, *[entry for entry, _ in entries])
    _drain(client, stream, group, "worker-2", history)
    verdicts = {
        "total-queue": checker.total_queue(history),
        "exactly-once (naive effect)": checker.exactly_once(
            history, effects=_effects(client, stream, naive=True)
        ),
        "exactly-once (idempotent effect)": checker.exactly_once(
            history, effects=_effects(client, stream, naive=False)
        ),
    }
    facts = {"killed_after": crash_after, "stranded_pending": stranded, "reclaimed": len(ids)}
    client.close()
    return ScenarioResult(
        "consumer_kill_before_ack",
        seed,
        history,
        verdicts,
        {
            "total-queue": True,
            "exactly-once (naive effect)": False,
            "exactly-once (idempotent effect)": True,
        },
        facts,
    )


def broker_restart_no_persistence(
    broker: broker_mod.Broker | None = None, *, seed: int = 0, events: int = 200
) -> ScenarioResult:
    """Restart a broker that keeps nothing: the stream, the group and the backlog are gone.

    Events are published and half are consumed; the broker restarts with
    persistence ``none``; the consumer's next read fails with NOGROUP and the
    unread half is lost. total-queue is INVALID and names every lost id.
    """
    rng = _rng(seed)
    history = History()
    with _private_broker(broker, "none") as handle:
        client = handle.client()
        stream = _stream("restart-none", client)
        streams.create_group(client, stream, "billing", start="0")
        _publish(client, stream, _events(rng, events), history)
        _drain(client, stream, "billing", "c1", history, limit=events // 2)
        client.close()
        faults.restart_broker(handle, persistence="none", history=history)
        client = handle.client()
        error = ""
        try:
            with history.op("c1", "dequeue"):
                workers.read(client, stream, "billing", "c1", count=50)
        except redis.ResponseError as exc:
            error = str(exc).split(" ", 1)[0]
        facts = {
            "stream_length_after": int(client.xlen(stream)),
            "read_error_after": error,
            "consumed_before": events // 2,
        }
        client.close()
    return ScenarioResult(
        "broker_restart_no_persistence",
        seed,
        history,
        {"total-queue": checker.total_queue(history)},
        {"total-queue": False},
        facts,
    )


def kill9_rdb_vs_aof(
    broker: broker_mod.Broker | None = None, *, seed: int = 0, events: int = 300
) -> ScenarioResult:
    """Kill -9 the broker under RDB and under AOF ``always``; measure what each loses.

    Per mode: events are published and acknowledged, the server is SIGKILLed
    and started again on the same data folder, and the final read (XRANGE)
    counts what survived. RDB snapshots at most once a minute, so it loses
    everything since its last snapshot (total-queue INVALID); AOF ``always``
    fsyncs each write before replying and loses nothing (valid).
    """
    rng = _rng(seed)
    history = History()
    facts: dict[str, Any] = {}
    verdicts: dict[str, Verdict] = {}
    with _private_broker(broker, "none") as handle:
        for mode in ("rdb", "aof-always"):
            handle.restart(persistence=mode)
            client = handle.client()
            client.flushall()
            stream = _stream(f"kill9-{mode}", client)
            _publish(client, stream, _events(rng, events), history, process=f"producer-{mode}")
            client.close()
            faults.kill_broker(handle, history=history).undo()  # kill -9, start again
            client = handle.client()
            survivors = checker.stream_event_ids(client, stream)
            history.ok(f"final-{mode}", "dequeue", survivors)
            client.close()
            verdict = checker.total_queue(_variant(history, mode))
            verdicts[f"total-queue ({mode})"] = verdict
            facts[f"lost ({mode})"] = verdict.counts["lost"]
            facts[f"survived ({mode})"] = len(survivors)
    return ScenarioResult(
        "kill9_rdb_vs_aof",
        seed,
        history,
        verdicts,
        {"total-queue (rdb)": False, "total-queue (aof-always)": True},
        facts,
    )


def graceful_restart(
    broker: broker_mod.Broker | None = None,
    *,
    seed: int = 0,
    events: int = 200,
    persistence: broker_mod.Persistence = "aof-everysec",
) -> ScenarioResult:
    """Restart the broker gracefully mid-stream: SHUTDOWN saves, nothing is lost.

    Half the events are consumed, the broker shuts down with ``SHUTDOWN SAVE``
    and starts again, and the same group continues where it stopped:
    total-queue and exactly-once are both valid.
    """
    rng = _rng(seed)
    history = History()
    with _private_broker(broker, persistence) as handle:
        client = handle.client()
        stream = _stream("graceful", client)
        streams.create_group(client, stream, "billing", start="0")
        _publish(client, stream, _events(rng, events), history)
        _drain(client, stream, "billing", "c1", history, limit=events // 2)
        client.close()
        faults.restart_broker(handle, graceful=True, history=history)
        client = handle.client()
        _drain(client, stream, "billing", "c1", history)
        effects = _effects(client, stream, naive=True)
        facts = {"stream_length_after": int(client.xlen(stream)), "persistence": persistence}
        client.close()
    return ScenarioResult(
        "graceful_restart",
        seed,
        history,
        {
            "total-queue": checker.total_queue(history),
            "exactly-once": checker.exactly_once(history, effects=effects),
        },
        {"total-queue": True, "exactly-once": True},
        facts,
    )


def lost_publish_reply(
    broker: broker_mod.Broker | None = None, *, seed: int = 0, events: int = 100
) -> ScenarioResult:
    """A publish whose reply is lost: the producer retries, the stream holds a duplicate.

    The producer talks through the fault proxy. At a seeded event, replies are
    cut (a one-way ``downstream`` partition): the XADD is applied but times
    out (``info``); after heal the producer retries the same event (same id)
    and succeeds. The stream has one entry too many; the idempotent consumer
    applies one effect per id (exactly-once valid), the naive one applies two.
    """
    rng = _rng(seed)
    handle = _shared(broker)
    client = handle.client()
    stream = _stream("lost-reply", client)
    streams.create_group(client, stream, "billing", start="0")
    history = History()
    batch = _events(rng, events)
    victim = rng.randrange(events)
    proxy = faults.Proxy(handle.url, seed=seed)
    # only the victim publish gets a short timeout: it is the one whose reply is
    # cut; every other publish waits generously, so a stall on a loaded machine
    # is not mistaken for a lost reply
    producer = proxy.client(socket_timeout=5.0, socket_connect_timeout=5.0, retry=_NO_RETRY)
    impatient = proxy.client(socket_timeout=0.2, socket_connect_timeout=5.0, retry=_NO_RETRY)
    try:
        impatient.ping()  # connect now: the cut must catch the XADD's reply, not the handshake
        for i, event in enumerate(batch):
            if i == victim:
                cut = proxy.partition(direction="downstream", history=history)
                with (
                    contextlib.suppress(redis.TimeoutError),
                    history.op("producer", "enqueue", event.id),
                ):
                    streams.publish(impatient, stream, event)
                cut.undo()
            with history.op("producer", "enqueue", event.id):  # the retry (or the only try)
                streams.publish(producer, stream, event)
    finally:
        producer.close()
        impatient.close()
        proxy.close()
    _drain(client, stream, "billing", "c1", history)
    facts = {"stream_length": int(client.xlen(stream)), "events": events, "victim": victim}
    verdicts = {
        "total-queue": checker.total_queue(history),
        "exactly-once (idempotent effect)": checker.exactly_once(
            history, effects=_effects(client, stream, naive=False)
        ),
        "exactly-once (naive effect)": checker.exactly_once(
            history, effects=_effects(client, stream, naive=True)
        ),
    }
    client.close()
    return ScenarioResult(
        "lost_publish_reply",
        seed,
        history,
        verdicts,
        {
            "total-queue": True,
            "exactly-once (idempotent effect)": True,
            "exactly-once (naive effect)": False,
        },
        facts,
    )


def out_of_order_two_consumers(
    broker: broker_mod.Broker | None = None,
    *,
    seed: int = 0,
    aggregates: int = 8,
    versions: int = 12,
    window: int = 6,
) -> ScenarioResult:
    """Versions of each aggregate arrive shuffled, and two consumers of one group race on them.

    Each aggregate gets versions 1..N; each aggregate's own versions are
    shuffled within seeded windows of ``window`` (delayed delivery), then the
    aggregates are interleaved, so versions of one key really are published out
    of order: ``facts["per_key_inversions"]`` counts the pairs of one
    aggregate's versions published newest-first (more than zero for every
    seed). On top of that, two consumers read alternate batches and the second
    finishes first. A versioned upsert (Lua: write only if newer) never goes
    back (monotonic-versions valid) and ends at the newest version; a
    last-write-wins projection regresses (INVALID).
    """
    rng = _rng(seed)
    handle = _shared(broker)
    client = handle.client()
    stream = _stream("out-of-order", client)
    streams.create_group(client, stream, "projection", start="0")
    history = History()
    published = _shuffled_versions(
        rng, seed=seed, aggregates=aggregates, versions=versions, window=window
    )
    _publish(client, stream, published, history)
    versioned, naive = f"{stream}:versioned", f"{stream}:naive"
    observations: list[dict[str, Any]] = []
    while True:
        first = workers.read(client, stream, "projection", "c1", count=4)
        second = workers.read(client, stream, "projection", "c2", count=4)
        if not first and not second:
            break
        # c2 read later but finishes first: the race that reorders effects
        for consumer, batch in (("c2", second), ("c1", first)):
            if not batch:
                continue
            history.ok(consumer, "dequeue", [f["id"] for _, f in batch])
            for entry, fields in batch:
                event = Event.from_fields(fields)
                aggregate, version = str(event.subject), int(event.data["version"])
                now = int(client.eval(workers.VERSIONED_UPSERT, 1, versioned, aggregate, version))
                client.hset(naive, aggregate, version)
                seen = int(client.hget(naive, aggregate) or 0)
                observations.append(
                    {"projection": "versioned", "aggregate": aggregate, "version": now}
                )
                observations.append(
                    {"projection": "naive", "aggregate": aggregate, "version": seen}
                )
                history.ok(
                    consumer, "read", {"aggregate": aggregate, "versioned": now, "naive": seen}
                )
                client.xack(stream, "projection", entry)
    obs = pd.DataFrame(observations)
    newest = {f"order-{a}": str(versions) for a in range(aggregates)}
    final_versioned = client.hgetall(versioned)
    final_naive = client.hgetall(naive)
    facts = {
        "per_key_inversions": per_key_inversions(published),
        "wrong_at_end (versioned)": len(checker.diff(final_versioned, newest)),  # type: ignore[arg-type]
        "wrong_at_end (naive)": len(checker.diff(final_naive, newest)),  # type: ignore[arg-type]
    }
    client.close()
    return ScenarioResult(
        "out_of_order_two_consumers",
        seed,
        history,
        {
            "total-queue": checker.total_queue(history),
            "monotonic (versioned upsert)": checker.monotonic_versions(
                obs[obs["projection"] == "versioned"]
            ),
            "monotonic (last write wins)": checker.monotonic_versions(
                obs[obs["projection"] == "naive"]
            ),
        },
        {
            "total-queue": True,
            "monotonic (versioned upsert)": True,
            "monotonic (last write wins)": False,
        },
        facts,
    )


def _shuffled_versions(
    rng: random.Random, *, seed: int, aggregates: int, versions: int, window: int
) -> list[Event]:
    """Each aggregate's versions shuffled within windows of its own, then interleaved."""
    per_key = [
        faults.out_of_order(
            [
                Event(
                    type="OrderUpdated",
                    source="scenario",
                    id=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
                    subject=f"order-{a}",
                    data={"version": v},
                )
                for v in range(1, versions + 1)
            ],
            window=window,
            seed=seed * 1000 + a,
        )
        for a in range(aggregates)
    ]
    return [per_key[a][i] for i in range(versions) for a in range(aggregates)]


def per_key_inversions(events: Sequence[Event]) -> int:
    """Count pairs of one aggregate's events published with the newer version first."""
    seen: dict[str, list[int]] = {}
    inversions = 0
    for event in events:
        version = int(event.data["version"])
        earlier = seen.setdefault(str(event.subject), [])
        inversions += sum(1 for v in earlier if v > version)
        earlier.append(version)
    return inversions


def _count_subject(state: dict[str, Any], fields: dict[str, str]) -> None:
    subject = fields.get("subject", "")
    state[subject] = state.get(subject, 0) + 1


def latency_partition_heal(  # noqa: PLR0915 - one story, told in order
    broker: broker_mod.Broker | None = None,
    *,
    seed: int = 0,
    events: int = 150,
    within: float = 5.0,
) -> ScenarioResult:
    """Latency, then a partition, then heal: how long until the projection agrees with the log?

    A projection consumer reads through the fault proxy and keeps a count per
    order; a producer publishes straight to the broker. A seeded nemesis adds
    latency, then partitions the consumer (bytes held), then heals. The
    consumer survives timeouts by re-reading its own pending entries first.
    After heal the checker polls the projection against a fold over XRANGE:
    convergence is valid within ``within`` seconds and its time is reported.
    """
    rng = _rng(seed)
    handle = _shared(broker)
    client = handle.client()
    stream = _stream("partition-heal", client)
    group, projection = "projection", f"{stream}:projection"
    streams.create_group(client, stream, group, start="0")
    history = History()
    plan = faults.schedule(
        seed=seed,
        faults=["latency", "partition"],
        cycles=2,
        warmup=0.2,
        fault_seconds=(0.4, 0.6),
        gap_seconds=(0.1, 0.2),
        quiesce=0.1,
        in_order=True,
    )
    proxy = faults.Proxy(handle.url, seed=seed)
    stop = threading.Event()
    samples: list[tuple[datetime, int]] = []

    def truth() -> dict[str, Any]:
        return checker.fold_stream(client_truth, stream, _count_subject)

    def view() -> dict[str, Any]:
        return {str(k): int(v) for k, v in client_truth.hgetall(projection).items()}

    def consume() -> None:
        reader = proxy.client(socket_timeout=0.3, socket_connect_timeout=0.3, retry=_NO_RETRY)
        position = "0"  # own pending first: after a timeout the reply may be lost
        loops = 0
        while not stop.is_set():
            loops += 1
            if position == ">" and loops % _REREAD_PENDING_EVERY == 0:
                # a ">" read held by the partition may reach the broker at heal,
                # after this loop timed out and moved on: the broker then assigns
                # entries to c1 whose reply went nowhere. Only re-reading our own
                # pending list ("0") now and then picks those up.
                position = "0"
            try:
                batch = workers.read(
                    reader, stream, group, "c1", count=20, position=position, block_ms=50
                )
                position = ">" if position == "0" and not batch else position
                if not batch:
                    continue
                ids = [f.get("id", e) for e, f in batch]
                history.ok("c1", "dequeue", ids)
                pipe = reader.pipeline(transaction=True)
                for entry, fields in batch:
                    # effect + dedupe mark + ack in one MULTI: a batch retried
                    # after a lost reply never counts twice, nor zero times
                    pipe.eval(
                        workers.PROJECT_EFFECT,
                        3,
                        f"{stream}:seen",
                        f"{stream}:applied",
                        projection,
                        fields.get("id", entry),
                        fields.get("subject", ""),
                    )
                    pipe.xack(stream, group, entry)
                pipe.execute()
            except (redis.TimeoutError, redis.ConnectionError):
                history.info("c1", "dequeue")
                position = "0"
        reader.close()

    client_truth = handle.client()
    worker = threading.Thread(target=consume, name="scenario-consumer", daemon=True)
    actions: dict[str, faults.Action] = {
        "latency": lambda: proxy.latency(0.15, jitter=0.05, direction="both"),
        "partition": lambda: proxy.partition(direction="both", mode="hold"),
    }
    nemesis = faults.Nemesis(plan, actions, history=history)
    try:
        worker.start()
        nemesis.start()
        ordered = _events(rng, events, aggregates=6)
        pace = (plan.duration - 0.1) / events
        for event in ordered:
            with history.op("producer", "enqueue", event.id):
                streams.publish(client, stream, event)
            samples.append((datetime.now(UTC), len(checker.diff(view(), truth()))))
            time.sleep(pace)
        nemesis.join(timeout=plan.duration + _WAIT)
        windows = history.fault_windows()
        heal = windows["end"].max() if len(windows) else datetime.now(UTC)
        verdict = checker.watch_convergence(view, truth, within=within, heal=heal, samples=samples)
    finally:
        stop.set()
        worker.join(timeout=5)
        proxy.close()
    facts = {
        "convergence_seconds": verdict.convergence_seconds,
        "faults": [p.fault for p in plan.phases if p.fault],
    }
    result = ScenarioResult(
        "latency_partition_heal",
        seed,
        history,
        {
            "convergence": verdict,
            "total-queue": checker.total_queue(history),
            "exactly-once": checker.exactly_once(
                history,
                effects=[str(x) for x in client.lrange(f"{stream}:applied", 0, -1)],
            ),
        },
        {"convergence": True, "total-queue": True, "exactly-once": True},
        facts,
    )
    client.close()
    client_truth.close()
    return result


def maxlen_trimming(
    broker: broker_mod.Broker | None = None,
    *,
    seed: int = 0,
    events: int = 300,
    maxlen: int = 100,
) -> ScenarioResult:
    """A consumer stops; the producer keeps trimming with MAXLEN; the gap is lost to retention.

    The consumer reads a quarter of the events and goes down; the producer
    publishes the rest with ``MAXLEN = maxlen`` (exact, so the figure repeats).
    When the consumer comes back, the entries trimmed before it read them are
    gone: lost-by-retention and total-queue are INVALID and name them.
    """
    rng = _rng(seed)
    handle = _shared(broker)
    client = handle.client()
    stream = _stream("maxlen", client)
    streams.create_group(client, stream, "billing", start="0")
    history = History()
    batch = _events(rng, events)
    first = events // 4
    _publish(client, stream, batch[:first], history, maxlen=maxlen)
    _drain(client, stream, "billing", "c1", history)
    with history.fault("consumer-down"):
        _publish(client, stream, batch[first:], history, maxlen=maxlen)
    lag = streams.groups_frame(client, [stream])["lag"].iloc[0]
    _drain(client, stream, "billing", "c1", history)
    present = checker.stream_event_ids(client, stream)
    retention = checker.lost_by_retention(history, present=present)
    facts = {
        "stream_length": int(client.xlen(stream)),
        "lost": retention.counts["lost"],
        "lag_reported_while_down": None if pd.isna(lag) else int(lag),
    }
    client.close()
    return ScenarioResult(
        "maxlen_trimming",
        seed,
        history,
        {"lost-by-retention": retention, "total-queue": checker.total_queue(history)},
        {"lost-by-retention": False, "total-queue": False},
        facts,
    )


def group_after_events(
    broker: broker_mod.Broker | None = None, *, seed: int = 0, events: int = 100
) -> ScenarioResult:
    """Create consumer groups after the events exist: at ``$`` they are skipped, at ``0`` read.

    The same events are published before two groups are created, one at ``$``
    (faststream's implied default) and one at ``0``. The ``$`` group reads
    nothing (total-queue INVALID, every event lost to it); the ``0`` group
    reads all (valid).
    """
    rng = _rng(seed)
    handle = _shared(broker)
    client = handle.client()
    stream = _stream("group-after", client)
    history = History()
    batch = _events(rng, events)
    for tag in ("dollar", "zero"):
        for event in batch:
            history.invoke(f"producer-{tag}", "enqueue", event.id)
    streams.publish_many(client, stream, batch)
    for event in batch:
        for tag in ("dollar", "zero"):
            history.ok(f"producer-{tag}", "enqueue", event.id)
    verdicts = {}
    for start, tag in (("$", "dollar"), ("0", "zero")):
        streams.create_group(client, stream, f"service-{tag}", start=start)
        _drain(
            client,
            stream,
            f"service-{tag}",
            f"consumer-{tag}",
            history,
            naive=False,
            idempotent=False,
        )
        verdicts[f"total-queue (start {start})"] = checker.total_queue(_variant(history, tag))
    client.close()
    return ScenarioResult(
        "group_after_events",
        seed,
        history,
        verdicts,
        {"total-queue (start $)": False, "total-queue (start 0)": True},
        {"events": events},
    )


# -- scenarios with a running consumer (faststream defaults vs the eventlab runtime) ---


def _run_async(make: Callable[[], Coroutine[Any, Any, _T]]) -> _T:
    """Run a coroutine to completion, also from a notebook whose event loop is running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(make())
    box: list[_T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            box.append(asyncio.run(make()))
        except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread
            errors.append(exc)

    thread = threading.Thread(target=target, name="eventlab-scenario")
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return box[0]


async def _until(done: Callable[[], bool], *, what: str, timeout: float = _WAIT) -> None:  # noqa: ASYNC109 - seconds
    """Poll ``done`` until true; raise ``TimeoutError`` naming ``what`` after ``timeout`` s.

    Scenarios wait for the condition itself, never for a fixed time, so a slow
    machine only makes them slower; a condition that never comes fails loudly.
    """
    deadline = time.monotonic() + timeout
    while not done():  # polls Redis state: no event to await
        if time.monotonic() >= deadline:
            raise TimeoutError(f"scenario waited {timeout:g} s for {what}, in vain")
        await asyncio.sleep(0.02)


def _fast_retries() -> Any:
    from eventlab.consumer import Backoff  # noqa: PLC0415 - the runtime loads on use

    return Backoff(initial=0.01, maximum=0.05)


def _publish_for(
    client: redis.Redis,
    stream: str,
    events: Sequence[Event],
    history: History,
    *,
    tags: Sequence[str],
) -> None:
    """Publish ``events`` once, recorded as enqueued by ``producer-<tag>`` for each variant."""
    for event in events:
        for tag in tags:
            history.invoke(f"producer-{tag}", "enqueue", event.id)
    streams.publish_many(client, stream, events)
    for event in events:
        for tag in tags:
            history.ok(f"producer-{tag}", "enqueue", event.id)


def handler_error_defaults(  # noqa: C901, PLR0915 - two consumers, told side by side
    broker: broker_mod.Broker | None = None,
    *,
    seed: int = 0,
    events: int = 60,
    failing: int = 5,
) -> ScenarioResult:
    """A handler that fails once: stuck pending under faststream defaults, retried by eventlab.

    The same events go to two groups. Under faststream's defaults (its nack
    does nothing on Redis) each failed event stays in the pending list for
    ever, even after the subscriber restarts: a marker event published after
    the restart is handled, the failed ones are never re-read (total-queue
    INVALID, the failures lost). The eventlab runtime retries them in process: valid, the
    pending list drains.
    """
    from faststream.redis import RedisBroker, StreamSub  # noqa: PLC0415
    from faststream.redis.annotations import RedisStreamMessage  # noqa: PLC0415

    from eventlab.consumer import Reliable  # noqa: PLC0415

    rng = _rng(seed)
    handle = _shared(broker)
    client = handle.client()
    stream = _stream("handler-error", client)
    history = History()
    batch = _events(rng, events)
    bad = {e.id for e in rng.sample(batch, failing)}
    # published after faststream's restart: once handled, the restarted
    # subscriber has certainly been reading, so "never re-reads" means something
    marker = _events(rng, 1, type_="Marker")[0]
    for tag in ("faststream", "eventlab"):
        streams.create_group(client, stream, tag, start="0")
    _publish_for(client, stream, batch, history, tags=("faststream", "eventlab"))
    facts: dict[str, Any] = {"failing": failing}

    def pending(group: str) -> int:
        return streams.pending_summary(client, stream, group).count

    async def faststream_defaults() -> None:
        calls: list[str] = []
        for attempt in ("first", "restarted"):
            fs = RedisBroker(handle.url, logger=None)  # type: ignore[arg-type]  # None: no logs
            sub = StreamSub(stream, group="faststream", consumer="c1", max_records=10)

            async def handle_fs(body: Any, msg: Any) -> None:  # noqa: ARG001
                event_id = msg.raw_message["data"][b"id"].decode()
                calls.append(event_id)
                with history.op("consumer-faststream", "dequeue", event_id):
                    if event_id in bad:
                        raise RuntimeError("handler failed (transient)")

            # a real annotation object: this module's string annotations cannot
            # see a name imported inside the function
            handle_fs.__annotations__["msg"] = RedisStreamMessage
            fs.subscriber(stream=sub)(handle_fs)

            await fs.start()
            if attempt == "first":
                # every event handled and every success acked (the failures stay)
                await _until(
                    lambda: len(calls) >= events and pending("faststream") <= failing,
                    what="faststream to handle every event and ack the successes",
                )
            else:
                before = len(calls)
                _publish_for(client, stream, [marker], history, tags=("faststream", "eventlab"))
                await _until(
                    lambda: marker.id in calls and pending("faststream") <= failing,
                    what="the restarted faststream subscriber to handle and ack the marker",
                )
                facts["redelivered after restart (faststream)"] = len(
                    [i for i in calls[before:] if i in bad]
                )
            await fs.stop()
            facts[f"pending after {attempt} run (faststream)"] = pending("faststream")

    async def eventlab_runtime() -> None:
        tried: set[str] = set()
        done: set[str] = set()
        reliable = Reliable(handle.url, consumer="c1")

        @reliable.subscriber(
            stream, group="eventlab", start="0", batch=10, block=0.05, backoff=_fast_retries()
        )
        async def handle_el(event: Event) -> None:
            with history.op("consumer-eventlab", "dequeue", event.id):
                if event.id in bad and event.id not in tried:
                    tried.add(event.id)
                    raise RuntimeError("handler failed (transient)")
            done.add(event.id)

        async with reliable:
            await _until(
                lambda: len(done) >= events + 1 and pending("eventlab") == 0,
                what="the eventlab runtime to handle and ack every event and the marker",
            )
        facts["pending after run (eventlab)"] = pending("eventlab")

    _run_async(faststream_defaults)
    _run_async(eventlab_runtime)
    client.close()
    return ScenarioResult(
        "handler_error_defaults",
        seed,
        history,
        {
            "total-queue (faststream defaults)": checker.total_queue(
                _variant(history, "faststream")
            ),
            "total-queue (eventlab runtime)": checker.total_queue(_variant(history, "eventlab")),
        },
        {"total-queue (faststream defaults)": False, "total-queue (eventlab runtime)": True},
        facts,
    )


def _effect_ids(client: redis.Redis, key: str) -> list[str]:
    """Expand a hash of event id → effect count into one id per applied effect."""
    counts: Any = client.hgetall(key)
    return [str(event_id) for event_id, n in counts.items() for _ in range(int(n))]


def poison_to_dlq(
    broker: broker_mod.Broker | None = None,
    *,
    seed: int = 0,
    events: int = 40,
    poison: int = 2,
    max_deliveries: int = 3,
) -> ScenarioResult:
    """Poison events and a schema-invalid entry end in ``<stream>:dlq``; the rest flows on.

    The handler always fails on a poison event: the runtime retries it, lets
    it be redelivered, and after ``max_deliveries`` moves it to the dead-letter
    stream with the reason. An entry that is not a valid event is dead-lettered
    at once. Every good event has exactly one effect and the pending list drains.
    """
    from eventlab.consumer import Effects, Reliable, dead_letters  # noqa: PLC0415

    rng = _rng(seed)
    handle = _shared(broker)
    client = handle.client()
    stream = _stream("poison", client)
    effects_key = f"{stream}:effects"
    history = History()
    good = _events(rng, events)
    bad = [faults.poison_event(subject=f"order-{i}") for i in range(poison)]
    mixed = list(good)
    for event in bad:
        mixed.insert(rng.randrange(len(mixed) + 1), event)
    streams.create_group(client, stream, "billing", start="0")
    for event in mixed:
        f = "enqueue" if event.type != "Poison" else "enqueue-poison"
        with history.op("producer", f, event.id):
            streams.publish(client, stream, event)
    invalid_entry = faults.publish_invalid(client, stream, history=history)

    async def consume() -> None:
        reliable = Reliable(handle.url, consumer="c1")

        @reliable.subscriber(
            stream,
            group="billing",
            start="0",
            batch=10,
            block=0.05,
            min_idle=0.1,
            reclaim_every=0.05,
            attempts=1,
            max_deliveries=max_deliveries,
            backoff=_fast_retries(),
        )
        async def bill(event: Event, effects: Effects) -> None:
            with history.op(
                "c1", "dequeue" if event.type != "Poison" else "dequeue-poison", event.id
            ):
                if event.data == {"poison": True}:
                    raise ValueError("cannot bill a poison event")
                effects.hincrby(effects_key, event.id, 1)

        async with reliable:
            await _until(
                lambda: (
                    len(dead_letters(client, stream)) >= poison + 1
                    and streams.pending_summary(client, stream, "billing").count == 0
                ),
                what="every poison and invalid entry dead-lettered and nothing pending",
            )

    _run_async(consume)
    letters = dead_letters(client, stream)
    lettered = {d.event_id for d in letters} | {d.original_id for d in letters}
    expected = {e.id for e in bad} | {invalid_entry}
    missing = sorted(expected - lettered)
    pending = streams.pending_summary(client, stream, "billing").count
    dlq = Verdict(
        name="dead-letters",
        valid=not missing and pending == 0 and len(letters) == len(expected),
        counts={"expected": len(expected), "dead_lettered": len(letters), "pending": pending},
        offending={"missing": missing},
        frames={
            "dead_letters": pd.DataFrame(
                [
                    {
                        "event_id": d.event_id,
                        "reason": d.reason,
                        "error": d.error,
                        "attempts": d.attempts,
                    }
                    for d in letters
                ]
            )
        },
    )
    verdicts = {
        "total-queue (good events)": checker.total_queue(history),
        "exactly-once (good events)": checker.exactly_once(
            history, effects=_effect_ids(client, effects_key)
        ),
        "dead-letters": dlq,
    }
    facts = {"reasons": sorted({d.reason for d in letters}), "pending": pending}
    client.close()
    return ScenarioResult(
        "poison_to_dlq",
        seed,
        history,
        verdicts,
        dict.fromkeys(verdicts, True),
        facts,
    )


def slow_handler_stolen(
    broker: broker_mod.Broker | None = None,
    *,
    seed: int = 0,
    events: int = 30,
    min_idle: float = 0.2,
) -> ScenarioResult:
    """A handler slower than ``min_idle``: another consumer steals the event; one effect stays.

    Two consumers share a group. ``c1``'s handler takes one seeded event,
    sleeps ``5 * min_idle`` seconds, then keeps holding it until ``c2``'s
    reclaimer has stolen it (XAUTOCLAIM once idle beyond ``min_idle``) and
    started processing it too, giving up after at most 10 s more; so the
    steal happens however slow the machine, and only then does ``c1`` finish.
    total-queue shows the duplicate delivery (valid: at least once); the
    runtime's dedupe keeps exactly one effect (valid).
    """
    from eventlab.consumer import Effects, Reliable  # noqa: PLC0415

    rng = _rng(seed)
    handle = _shared(broker)
    client = handle.client()
    stream = _stream("slow-handler", client)
    effects_key = f"{stream}:effects"
    history = History()
    batch = _events(rng, events)
    slow_id = batch[rng.randrange(events // 3)].id
    streams.create_group(client, stream, "billing", start="0")
    _publish(client, stream, batch, history)
    handled: list[str] = []

    async def consume() -> None:
        runtimes = []
        # c1 stays "slow" until c2 has stolen the event (at most 10 s): a fixed
        # sleep made the verdict depend on how fast c2 started on a busy machine.
        taken_by_c2 = asyncio.Event()
        for name in ("c1", "c2"):
            reliable = Reliable(handle.url, consumer=name)

            def make(consumer: str) -> Callable[[Event, Effects], Coroutine[Any, Any, None]]:
                async def bill(event: Event, effects: Effects) -> None:
                    with history.op(consumer, "dequeue", event.id):
                        if event.id == slow_id and consumer == "c1":
                            await asyncio.sleep(min_idle * 5)
                            with contextlib.suppress(TimeoutError):
                                await asyncio.wait_for(taken_by_c2.wait(), timeout=10.0)
                        elif event.id == slow_id:
                            taken_by_c2.set()
                        effects.hincrby(effects_key, event.id, 1)
                    handled.append(event.id)

                return bill

            reliable.subscriber(
                stream,
                group="billing",
                start="0",
                batch=1,
                block=0.05,
                min_idle=min_idle,
                reclaim_every=0.05,
            )(make(name))
            runtimes.append(reliable)
        # c1 starts first so it takes the slow event; c2 joins a moment later
        await runtimes[0].start()
        await _until(lambda: slow_id in history_ids(), what="c1 to take the slow event")
        await runtimes[1].start()
        stolen = 2  # handled by c1 (slowly) and by c2 (after reclaiming it)
        await _until(
            lambda: handled.count(slow_id) >= stolen and len(set(handled)) >= events,
            what="the slow event handled by both consumers and every event handled",
        )
        await _until(
            lambda: streams.pending_summary(client, stream, "billing").count == 0,
            what="the billing group's pending list to drain",
        )
        for reliable in runtimes:
            await reliable.stop()

    def history_ids() -> set[str]:
        return {r.value for r in history.rows() if r.type == "invoke" and r.f == "dequeue"}

    _run_async(consume)
    verdicts = {
        "total-queue": checker.total_queue(history),
        "exactly-once": checker.exactly_once(history, effects=_effect_ids(client, effects_key)),
    }
    facts = {
        "slow_event": slow_id,
        "deliveries_of_slow_event": handled.count(slow_id),
        "pending_at_end": streams.pending_summary(client, stream, "billing").count,
    }
    client.close()
    return ScenarioResult(
        "slow_handler_stolen",
        seed,
        history,
        verdicts,
        {"total-queue": True, "exactly-once": True},
        facts,
    )


SCENARIOS: dict[str, Callable[..., ScenarioResult]] = {
    "consumer_kill_before_ack": consumer_kill_before_ack,
    "handler_error_defaults": handler_error_defaults,
    "poison_to_dlq": poison_to_dlq,
    "slow_handler_stolen": slow_handler_stolen,
    "broker_restart_no_persistence": broker_restart_no_persistence,
    "kill9_rdb_vs_aof": kill9_rdb_vs_aof,
    "graceful_restart": graceful_restart,
    "lost_publish_reply": lost_publish_reply,
    "out_of_order_two_consumers": out_of_order_two_consumers,
    "latency_partition_heal": latency_partition_heal,
    "maxlen_trimming": maxlen_trimming,
    "group_after_events": group_after_events,
}
"""Scenario name → function (every one takes ``broker=None, *, seed=0``)."""


CRASH_SCENARIOS = frozenset(
    {"broker_restart_no_persistence", "kill9_rdb_vs_aof", "graceful_restart"}
)
"""Scenarios that kill or restart their broker (give them a private one)."""


def run(
    name: str, broker: broker_mod.Broker | None = None, *, seed: int = 0, **options: Any
) -> ScenarioResult:
    """Run the scenario called ``name`` (a key of :data:`SCENARIOS`)."""
    try:
        scenario = SCENARIOS[name]
    except KeyError:
        raise faults.FaultError(
            f"unknown scenario {name!r}", fix=f"use one of {', '.join(sorted(SCENARIOS))}"
        ) from None
    return scenario(broker, seed=seed, **options)
