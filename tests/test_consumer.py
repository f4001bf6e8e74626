"""The reliable consumer on a real broker, with real processes killed by SIGKILL."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import logging
import time
from pathlib import Path

import pytest
import redis
from faststream import FastStream
from faststream.redis import RedisBroker, RedisClusterBroker, StreamSub

from eventlab import processes, streams
from eventlab._errors import EventlabError
from eventlab.consumer import (
    Backoff,
    ConsumerError,
    Effects,
    PermanentError,
    Reliable,
    SubscriptionOptions,
    aredrive,
    dead_letters,
    dead_letters_frame,
    redrive,
    seen_key,
)
from eventlab.envelope import Event
from eventlab.metrics import Metrics
from tests._consumer_demo import effects_key

STREAM = "{lab:orders}"
COUNTS = "{lab:orders}:counts"


def _events(n: int, **data: object) -> list[Event]:
    return [Event(type="OrderPlaced", source="orders", data={"n": i, **data}) for i in range(n)]


def _wait(predicate, *, timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


async def _until(predicate, *, timeout: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def _pending(client: redis.Redis, group: str, stream: str = STREAM) -> int:
    return streams.pending_summary(client, stream, group).count


async def test_effects_applied_once_acked_after_success(broker, client):
    """Every event gets exactly one effect, and the pending list is empty afterwards."""
    streams.publish_many(client, STREAM, _events(250))
    metrics = Metrics()
    reliable = Reliable(broker.url, metrics=metrics)

    @reliable.subscriber(STREAM, group="billing", start="0", batch=50)
    async def bill(event: Event, effects: Effects) -> None:
        effects.hincrby(COUNTS, event.id, 1)

    async with reliable:
        assert await reliable.drain(timeout=20)
    counts = client.hgetall(COUNTS)
    assert len(counts) == 250
    assert set(counts.values()) == {"1"}
    assert _pending(client, "billing") == 0
    frame = metrics.frame()
    assert (frame["outcome"] == "ok").sum() == 250
    assert set(frame["group"]) == {"billing"}
    assert client.zcard(seen_key(STREAM, "billing")) == 250


async def test_handler_without_effects_and_sync_handler(broker, client):
    """A handler may take just the event, and may be a plain function."""
    streams.publish_many(client, STREAM, _events(5))
    seen: list[int] = []
    reliable = Reliable(broker.url)

    @reliable.subscriber(STREAM, group="audit", start="0")
    def audit(event: Event) -> None:
        seen.append(event.data["n"])

    async with reliable:
        assert await reliable.drain(timeout=10)
    assert seen == [0, 1, 2, 3, 4]


async def test_same_event_id_published_twice_has_one_effect(broker, client):
    """A re-published event (same id, new entry) is skipped as a duplicate."""
    event = Event(type="OrderPlaced", source="orders", data={"total": 5})
    streams.publish(client, STREAM, event)
    streams.publish(client, STREAM, event)
    metrics = Metrics()
    reliable = Reliable(broker.url, metrics=metrics)

    @reliable.subscriber(STREAM, group="billing", start="0")
    async def bill(event: Event, effects: Effects) -> None:
        effects.hincrby(COUNTS, "total", event.data["total"])

    async with reliable:
        assert await reliable.drain(timeout=10)
    assert client.hget(COUNTS, "total") == "5"
    assert sorted(metrics.frame()["outcome"]) == ["duplicate", "ok"]
    assert _pending(client, "billing") == 0


async def test_transient_error_twice_then_success_on_third_delivery(broker, client):
    """A handler failing twice is redelivered (delivery count) and succeeds on the third."""
    streams.publish(client, STREAM, Event(type="OrderPlaced", source="orders", data={}))
    calls: list[int] = []
    metrics = Metrics()
    reliable = Reliable(broker.url, metrics=metrics)

    @reliable.subscriber(
        STREAM,
        group="billing",
        start="0",
        attempts=1,
        min_idle=0.3,
        max_deliveries=5,
        backoff=Backoff(initial=0.05, maximum=0.1),
    )
    async def flaky(event: Event, effects: Effects) -> None:
        calls.append(1)
        if len(calls) < 3:
            raise ConnectionError("payment gateway timed out")
        effects.hincrby(COUNTS, event.id, 1)

    async with reliable:
        assert await reliable.drain(timeout=15)
    assert len(calls) == 3
    assert list(client.hgetall(COUNTS).values()) == ["1"]
    frame = metrics.frame()
    assert list(frame["outcome"]) == ["retry", "retry", "ok"]
    assert list(frame["attempt"]) == [1, 2, 3]
    assert dead_letters(client, STREAM) == []


async def test_in_process_retries_with_backoff(broker, client):
    """With attempts=3 a handler failing twice succeeds within one delivery."""
    streams.publish(client, STREAM, Event(type="OrderPlaced", source="orders", data={}))
    calls: list[float] = []
    reliable = Reliable(broker.url)

    @reliable.subscriber(
        STREAM, group="billing", start="0", attempts=3, backoff=Backoff(initial=0.05)
    )
    async def flaky(event: Event, effects: Effects) -> None:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise TimeoutError("slow dependency")
        effects.hincrby(COUNTS, event.id, 1)

    async with reliable:
        assert await reliable.drain(timeout=10)
    assert len(calls) == 3
    assert calls[1] - calls[0] >= 0.05 * 0.5  # backoff with jitter waited
    assert reliable.health()[f"{STREAM}/billing"].reclaimed == 0


async def test_poison_event_dead_lettered_then_redriven_once(broker, client):
    """A poison event is dead-lettered after N deliveries with a reason; redrive applies it once."""
    good = _events(3)
    poison = Event(type="OrderPlaced", source="orders", data={"poison": True})
    streams.publish_many(client, STREAM, [*good, poison])
    fixed = False
    reliable = Reliable(broker.url, consumer="c1")

    # min_idle bounds the time to redelivery; a short one keeps the test fast
    @reliable.subscriber(
        STREAM, group="billing", start="0", attempts=1, max_deliveries=3, min_idle=0.2
    )
    async def bill(event: Event, effects: Effects) -> None:
        if event.data.get("poison") and not fixed:
            raise ValueError("total is missing")
        effects.hincrby(COUNTS, event.id, 1)

    async with reliable:
        assert await reliable.drain(timeout=15)
        letters = dead_letters(client, STREAM)
        assert len(letters) == 1
        letter = letters[0]
        assert letter.event_id == poison.id
        assert letter.attempts == 3
        assert "ValueError: total is missing" in letter.reason
        assert letter.error == "ValueError"
        assert (letter.group, letter.consumer, letter.stream) == ("billing", "c1", STREAM)
        assert letter.fields == poison.to_fields()
        assert _pending(client, "billing") == 0
        assert poison.id not in client.hgetall(COUNTS)

        fixed = True
        moved = redrive(client, STREAM, group="billing")
        assert len(moved) == 1
        assert redrive(client, STREAM) == []  # idempotent: nothing left to move
        assert await reliable.drain(timeout=10)
    assert client.hget(COUNTS, poison.id) == "1"
    assert len(client.hgetall(COUNTS)) == 4
    assert dead_letters(client, STREAM) == []


async def test_malformed_entry_goes_to_dead_letters_with_reason(broker, client):
    """An entry that is not a valid event is dead-lettered at once, its fields kept."""
    client.xadd(STREAM, {"type": "OrderPlaced", "data": "{not json"})
    streams.publish(client, STREAM, _events(1)[0])
    reliable = Reliable(broker.url)

    @reliable.subscriber(STREAM, group="billing", start="0")
    async def bill(event: Event, effects: Effects) -> None:
        effects.hincrby(COUNTS, event.id, 1)

    async with reliable:
        assert await reliable.drain(timeout=10)
    (letter,) = dead_letters(client, STREAM)
    assert letter.reason.startswith("not a valid event")
    assert "data: not JSON" in letter.reason
    assert letter.error == "EnvelopeError"
    assert letter.fields == {"type": "OrderPlaced", "data": "{not json"}
    assert letter.attempts == 1
    assert len(client.hgetall(COUNTS)) == 1
    assert _pending(client, "billing") == 0
    assert list(dead_letters_frame(client, STREAM)["reason"]) == [letter.reason]


async def test_permanent_error_skips_retries(broker, client):
    """A declared permanent error dead-letters on the first delivery, no retries."""
    streams.publish(client, STREAM, _events(1)[0])
    calls: list[int] = []

    class RejectedError(Exception):
        pass

    reliable = Reliable(broker.url)

    @reliable.subscriber(
        STREAM, group="billing", start="0", attempts=3, max_deliveries=5, permanent=[RejectedError]
    )
    async def bill(_event: Event) -> None:
        calls.append(1)
        raise RejectedError("card declined")

    @reliable.subscriber(STREAM, group="audit", start="0", attempts=3)
    async def audit(_event: Event) -> None:
        raise PermanentError("schema v9 unknown")

    async with reliable:
        assert await reliable.drain(timeout=10)
    assert calls == [1]
    reasons = sorted(d.reason for d in dead_letters(client, STREAM))
    assert reasons == [
        "permanent error: PermanentError: schema v9 unknown",
        "permanent error: RejectedError: card declined",
    ]
    assert {d.group for d in dead_letters(client, STREAM, group="audit")} == {"audit"}


async def test_effect_failing_in_redis_is_dead_lettered(broker, client):
    """An effect Redis rejects (wrong type) dead-letters the event instead of losing it."""
    client.set("{lab:orders}:total", "x")
    streams.publish(client, STREAM, _events(1)[0])
    reliable = Reliable(broker.url)

    @reliable.subscriber(STREAM, group="billing", start="0")
    async def bill(_event: Event, effects: Effects) -> None:
        effects.hincrby("{lab:orders}:total", "sum", 1)

    async with reliable:
        assert await reliable.drain(timeout=10)
    (letter,) = dead_letters(client, STREAM)
    assert "WRONGTYPE" in letter.reason
    assert letter.error == "EffectError"
    assert client.get("{lab:orders}:total") == "x"


async def test_failing_effect_among_several_applies_none_and_redrive_applies_once(broker, client):
    """A non-integer HINCRBY target after other effects applies nothing; redrive applies once."""
    totals, log, seen = "{lab:orders}:totals", "{lab:orders}:log", "{lab:orders}:seen-ids"
    client.hset(totals, "sum", "not a number")
    event = _events(1)[0]
    streams.publish(client, STREAM, event)
    reliable = Reliable(broker.url)

    @reliable.subscriber(STREAM, group="billing", start="0")
    async def bill(event: Event, effects: Effects) -> None:
        effects.incrby("{lab:orders}:n", 1)
        effects.sadd(seen, event.id)
        effects.xadd(log, {"id": event.id})
        effects.hincrby(totals, "sum", 5)  # fails: the field holds text
        effects.hset(totals, {"last": event.id})

    async with reliable:
        assert await reliable.drain(timeout=10)
        (letter,) = dead_letters(client, STREAM)
        assert "not an integer" in letter.reason
        assert letter.error == "EffectError"
        # nothing of the entry was applied: no partial effect to be applied again
        assert client.get("{lab:orders}:n") is None
        assert client.exists(seen, log) == 0
        assert client.hgetall(totals) == {"sum": "not a number"}

        client.hset(totals, "sum", "10")  # the fix
        assert len(redrive(client, STREAM)) == 1
        assert await reliable.drain(timeout=10)
    assert client.get("{lab:orders}:n") == "1"
    assert client.smembers(seen) == {event.id}
    assert client.xlen(log) == 1
    assert client.hgetall(totals) == {"sum": "15", "last": event.id}


async def test_effect_checks_follow_earlier_effects_of_the_same_event(broker, client):
    """The dry run sees what earlier effects leave: SET text then INCRBY fails as a whole."""
    client.set("{lab:orders}:n", "1")
    streams.publish_many(client, STREAM, _events(2))
    reliable = Reliable(broker.url)

    @reliable.subscriber(STREAM, group="billing", start="0", batch=1)
    async def bill(event: Event, effects: Effects) -> None:
        effects.hincrby(COUNTS, event.id, 1)
        if event.data["n"] == 0:  # fails at the INCRBY: the SET before it leaves text
            effects.set("{lab:orders}:n", "text")
            effects.incrby("{lab:orders}:n", 1)
        else:  # succeeds: a deleted key is a new hash, counting from zero
            effects.delete("{lab:orders}:n")
            effects.hset("{lab:orders}:n", {"a": "1"})
            effects.hincrby("{lab:orders}:n", "a", 2)

    async with reliable:
        assert await reliable.drain(timeout=10)
    (letter,) = dead_letters(client, STREAM)
    assert "earlier effect" in letter.reason
    assert len(client.hgetall(COUNTS)) == 1
    assert client.hgetall("{lab:orders}:n") == {"a": "3"}


def test_effects_refuse_keys_outside_the_stream_hash_slot():
    """An effect key in another Redis Cluster slot than the stream's is refused with the fix."""
    effects = Effects(stream=STREAM)
    effects.hincrby("{lab:orders}:billed", "c1", 5)  # same tag: fine
    effects.publish("{lab:orders}:other", _events(1)[0])
    with pytest.raises(ConsumerError, match="hash slot") as refused:
        effects.hincrby("{lab:payments}:billed", "c1", 5)
    assert "cluster_safe=False" in str(refused.value)
    assert "{lab:orders}:<name>" in str(refused.value)
    for record in (
        lambda e: e.set("lab:orders:x", 1),  # no tag: the whole key is hashed
        lambda e: e.sadd("lab:{}{orders}", "m"),  # an empty {} is no tag (Redis's rule)
        lambda e: e.guard_version("{lab:orders2}:view", 1),
    ):
        with pytest.raises(ConsumerError):
            record(effects)
    assert len(effects) == 2  # nothing refused was recorded
    # the slot is Redis's CRC16 (values from the CLUSTER KEYSLOT documentation)
    Effects(stream="foo{hash_tag}").incrby("bar{hash_tag}")
    with pytest.raises(ConsumerError, match="slot 11058"):
        Effects(stream="foo{hash_tag}").incrby("somekey")
    unchecked = Effects(stream=STREAM, cluster_safe=False)
    unchecked.hincrby("{lab:payments}:billed", "c1", 5)
    assert len(unchecked) == 1


async def test_cross_slot_effect_dead_letters_at_once_unless_opted_out(broker, client, caplog):
    """A cross-slot effect dead-letters its event unapplied; cluster_safe=False allows it."""
    caplog.set_level(logging.WARNING, logger="eventlab.consumer")
    streams.publish_many(client, STREAM, _events(2))
    client.xadd("lab:orders-untagged", _events(1)[0].to_fields())  # type: ignore[arg-type]
    reliable = Reliable(broker.url)
    elsewhere = "{lab:payments}:billed"

    @reliable.subscriber(STREAM, group="strict", start="0", attempts=3)
    async def strict(event: Event, effects: Effects) -> None:
        effects.hincrby(COUNTS, event.id, 1)
        effects.hincrby(elsewhere, event.id, 1)

    @reliable.subscriber(STREAM, group="single-node", start="0", cluster_safe=False)
    async def relaxed(event: Event, effects: Effects) -> None:
        effects.hincrby(elsewhere, event.id, 1)

    assert not [r for r in caplog.records if "hash tag" in r.getMessage()]

    @reliable.subscriber("lab:orders-untagged", group="g", start="0")
    async def untagged(event: Event, effects: Effects) -> None:
        effects.hincrby("lab:anything", event.id, 1)  # no tag on the stream: not checked

    warned = [r for r in caplog.records if "has no {hash tag}" in r.getMessage()]
    assert len(warned) == 1
    assert warned[0].levelno == logging.WARNING

    async with reliable:
        assert await reliable.drain(timeout=10)
    letters = dead_letters(client, STREAM, group="strict")
    assert len(letters) == 2
    assert all("hash slot" in d.reason and d.attempts == 1 for d in letters)
    assert client.exists(COUNTS) == 0  # the recorded same-slot effect was not applied either
    assert len(client.hgetall(elsewhere)) == 2  # by the opted-out group only
    assert len(client.hgetall("lab:anything")) == 1


async def test_group_start_dollar_skips_earlier_events_zero_does_not(broker, client):
    """A group created at '$' skips events produced before it; at '0' it reads them all."""
    streams.publish_many(client, STREAM, _events(5, phase="before"))
    seen: dict[str, list[str]] = {"late": [], "all": []}
    reliable = Reliable(broker.url)

    @reliable.subscriber(STREAM, group="late", start="$")
    async def late(event: Event) -> None:
        seen["late"].append(event.data["phase"])

    @reliable.subscriber(STREAM, group="all", start="0")
    async def everything(event: Event) -> None:
        seen["all"].append(event.data["phase"])

    async with reliable:
        await streams.apublish_many(broker.async_client(), STREAM, _events(3, phase="after"))
        assert await reliable.drain(timeout=10)
    assert seen["late"] == ["after"] * 3
    assert seen["all"] == ["before"] * 5 + ["after"] * 3


async def test_version_guard_keeps_newest_state(broker, client):
    """A per-aggregate version check ignores an older or repeated version of the same order."""
    versions = [1, 3, 2, 3, 4]
    streams.publish_many(
        client,
        STREAM,
        [
            Event(type="OrderUpdated", source="orders", subject="order-7", data={"v": v})
            for v in versions
        ],
    )
    metrics = Metrics()
    reliable = Reliable(broker.url, metrics=metrics)

    @reliable.subscriber(STREAM, group="projection", start="0", dedupe=False)
    async def project(event: Event, effects: Effects) -> None:
        key = f"{{lab:orders}}:order:{event.subject}"
        effects.guard_version(key, event.data["v"])
        effects.hset(key, {"status": f"v{event.data['v']}"})

    async with reliable:
        assert await reliable.drain(timeout=10)
    assert client.hgetall("{lab:orders}:order:order-7") == {"version": "4", "status": "v4"}
    assert list(metrics.frame()["outcome"]) == ["ok", "ok", "duplicate", "duplicate", "ok"]


async def test_outbox_publish_is_atomic_with_ack(broker, client):
    """A follow-up event recorded with effects.publish is appended exactly once."""
    streams.publish_many(client, STREAM, _events(4))
    out = "{lab:orders}:billed"
    reliable = Reliable(broker.url)

    @reliable.subscriber(STREAM, group="billing", start="0")
    async def bill(event: Event, effects: Effects) -> None:
        effects.publish(out, event.follow(type="OrderBilled", source="billing"))

    async with reliable:
        assert await reliable.drain(timeout=10)
    billed = streams.replay(client, out)
    assert len(billed) == 4
    assert {e.causationid for _, e in billed} == {e.id for _, e in streams.replay(client, STREAM)}


async def test_vanished_group_reported_and_recreated_only_on_opt_in(broker, client, caplog):
    """A group deleted under a running consumer turns health to group-missing and logs an ERROR."""
    caplog.set_level(logging.ERROR, logger="eventlab.consumer")
    reliable = Reliable(broker.url)

    @reliable.subscriber(STREAM, group="billing", start="0", block=0.05)
    async def bill(_event: Event) -> None:
        pass

    @reliable.subscriber(STREAM, group="audit", start="0", block=0.05, recreate_group=True)
    async def audit(_event: Event) -> None:
        pass

    async with reliable:
        await reliable.drain(timeout=5)
        client.xgroup_destroy(STREAM, "billing")
        client.xgroup_destroy(STREAM, "audit")
        health = reliable.health()
        await _until(
            lambda: reliable.health()[f"{STREAM}/billing"].state == "group-missing",
            what="group-missing",
        )
        health = reliable.health()
        assert "NOGROUP" in health[f"{STREAM}/billing"].reason
        await _until(
            lambda: {g["name"] for g in client.xinfo_groups(STREAM)} == {"audit"},
            what="audit group recreated",
        )
        # the group is back a moment before the reader records it: wait, do not race
        await _until(
            lambda: reliable.health()[f"{STREAM}/audit"].state == "running",
            what="audit running again",
        )
        assert reliable.health()[f"{STREAM}/billing"].state == "group-missing"
    assert any("is gone" in r.getMessage() for r in caplog.records)


async def test_faststream_app_starts_and_stops_reliable(broker, client):
    """Declared from a StreamSub on a RedisBroker, it starts and stops with the FastStream app."""
    streams.publish_many(client, STREAM, _events(20))
    kind = RedisClusterBroker if broker.cluster else RedisBroker  # faststream's own cluster broker
    fs_broker = kind(broker.url, logger=None)
    app = FastStream(fs_broker, logger=None)
    reliable = Reliable(fs_broker, app=app)

    @reliable.subscriber(
        StreamSub(STREAM, group="billing", consumer="svc-1", max_records=7), start="0"
    )
    async def bill(event: Event, effects: Effects) -> None:
        effects.hincrby(COUNTS, event.id, 1)

    sub = reliable.subscriptions[0]
    assert (sub.stream, sub.group, sub.batch, sub.consumer) == (STREAM, "billing", 7, "svc-1")
    async with app:
        assert await reliable.drain(timeout=10)
        assert reliable.health()[f"{STREAM}/billing"].state == "running"
    assert reliable.health()[f"{STREAM}/billing"].state == "stopped"
    assert len(client.hgetall(COUNTS)) == 20


def test_bad_declarations_fail_early(broker):
    """Missing group, implicit start and a wrong handler shape fail at declaration."""
    reliable = Reliable(broker.url)
    with pytest.raises(ConsumerError, match="no consumer group"):
        reliable.subscriber(STREAM, start="0")
    with pytest.raises(ConsumerError, match="not a group position"):
        reliable.subscriber(STREAM, group="g", start="latest")
    with pytest.raises(ConsumerError, match="takes 3 arguments"):
        reliable.subscriber(STREAM, group="g", start="0")(lambda _a, _b, _c: None)


async def test_aredrive_and_selection(broker, client):
    """Redrive moves only the selected dead letters; the asyncio form behaves the same."""
    client.xadd(f"{STREAM}:dlq", {**_events(1)[0].to_fields(), "dlqgroup": "a", "dlqid": "1-0"})
    client.xadd(f"{STREAM}:dlq", {**_events(1)[0].to_fields(), "dlqgroup": "b", "dlqid": "2-0"})
    assert redrive(client, STREAM, group="nobody") == []
    aclient = broker.async_client()
    moved = await aredrive(aclient, STREAM, where=lambda d: d.group == "b")
    assert len(moved) == 1
    assert [d.group for d in dead_letters(client, STREAM)] == ["a"]
    (_, fields), *_ = client.xrange(STREAM)
    assert not any(name.startswith("dlq") for name in fields)
    await aclient.aclose()


# -- real processes ----------------------------------------------------------------


def _spawn_counter(url: str, consumer: str, *, delay: float, min_idle: float = 1.0):
    proc = processes.spawn(
        "tests._consumer_demo:counter",
        args=[url, STREAM, "billing", consumer, str(min_idle), str(delay), "10"],
        name=f"counter-{consumer}",
    )
    proc.wait_ready(timeout=20)
    return proc


def _assert_exactly_once(client: redis.Redis, expected: int) -> None:
    counts = client.hgetall(effects_key(STREAM))
    assert len(counts) == expected
    assert set(counts.values()) == {"1"}, {k: v for k, v in counts.items() if v != "1"}


def test_consumer_killed_mid_batch_is_reclaimed_exactly_once(broker, client):
    """A consumer SIGKILLed mid-batch: another reclaims after min_idle; each effect applied once."""
    streams.publish_many(client, STREAM, _events(200))
    first = _spawn_counter(broker.url, "a", delay=0.01)
    try:
        _wait(lambda: client.hlen(effects_key(STREAM)) >= 40, what="first effects")
        first.kill()
        held = streams.pending_summary(client, STREAM, "billing").consumers.get("a", 0)
        assert held > 0  # it died holding a batch it had not acked
        done = client.hlen(effects_key(STREAM))
        assert done < 200
        second = _spawn_counter(broker.url, "b", delay=0.0)
        try:
            _wait(
                lambda: (
                    client.hlen(effects_key(STREAM)) == 200 and _pending(client, "billing") == 0
                ),
                what="all events handled",
            )
        finally:
            assert second.terminate() == 0
    finally:
        first.kill()
    _assert_exactly_once(client, 200)
    assert "a" not in streams.pending_summary(client, STREAM, "billing").consumers


def test_sigterm_finishes_in_flight_batch(broker, client):
    """A SIGTERMed service commits its in-flight batch and exits 0, leaving nothing pending."""
    streams.publish_many(client, STREAM, _events(300))
    proc = _spawn_counter(broker.url, "a", delay=0.005)
    try:
        _wait(lambda: client.hlen(effects_key(STREAM)) >= 20, what="first effects")
        assert proc.terminate(timeout=10) == 0
    finally:
        proc.kill()
    assert _pending(client, "billing") == 0
    handled = client.hlen(effects_key(STREAM))
    assert 20 <= handled < 300
    _assert_exactly_once(client, handled)


@pytest.mark.slow  # ~5-10 s of chaos: `make test` runs it, `make check` does not
def test_broker_killed_and_restarted_consumers_resume_without_second_effect(fresh_broker):
    """Broker SIGKILLed (AOF everysec) mid-stream: consumers reconnect, no event has two effects."""
    server = fresh_broker(persistence="aof-everysec")
    client = server.client()
    streams.publish_many(client, STREAM, _events(600))
    time.sleep(1.2)  # everysec: let the published events reach the disk
    procs = [_spawn_counter(server.url, name, delay=0.004) for name in ("a", "b")]
    try:
        _wait(lambda: client.hlen(effects_key(STREAM)) >= 150, what="first effects")
        client.close()
        server.restart(graceful=False)
        client = server.client()
        length = client.xlen(STREAM)
        assert length == 600
        _wait(
            lambda: client.hlen(effects_key(STREAM)) == length and _pending(client, "billing") == 0,
            timeout=60,
            what="all events handled after the restart",
        )
        assert all(p.alive for p in procs)
    finally:
        for proc in procs:
            proc.terminate()
    _assert_exactly_once(client, length)
    client.close()


def _incr_aof(state) -> Path:
    """The AOF file the server appends to now (last ``type i`` entry of the manifest)."""
    folder = Path(state) / "data" / "appendonlydir"
    (manifest,) = folder.glob("*.manifest")
    rows = [line.split() for line in manifest.read_text().splitlines() if line.strip()]
    return folder / [row[1] for row in rows if row[-1] == "i"][-1]


async def test_lost_aof_tail_loses_whole_commits_and_consumers_redo_exactly_those(fresh_broker):
    """An AOF tail cut mid-commit (an unsynced second) loses acks with effects; redone once."""
    server = fresh_broker(persistence="aof-everysec")
    client = server.client()
    events = _events(400)
    streams.publish_many(client, STREAM, events)
    client.execute_command("BGREWRITEAOF")  # the backlog goes to the base file
    _wait(lambda: client.info("persistence")["aof_rewrite_in_progress"] == 0, what="AOF rewrite")
    _wait(lambda: client.info("persistence")["aof_rewrite_scheduled"] == 0, what="AOF rewrite")
    aof = _incr_aof(server.state)
    before = aof.stat().st_size
    first = Reliable(server.url, consumer="c1")

    @first.subscriber(STREAM, group="billing", start="0", batch=10, min_idle=0.5)
    async def bill(event: Event, effects: Effects) -> None:
        effects.hincrby(COUNTS, event.id, 1)

    async with first:
        assert await first.drain(timeout=20)
    assert client.hlen(COUNTS) == 400
    client.close()
    server.kill()
    # SIGKILL keeps the page cache, so nothing is lost by itself: cut the file at a
    # byte inside the consumers' writes, as an fsync that never happened would
    after = aof.stat().st_size
    assert after > before
    with aof.open("r+b") as handle:
        handle.truncate(before + (after - before) * 3 // 5)
    server.restart(graceful=False)
    client = server.client()
    applied = client.hgetall(COUNTS)
    kept = len(applied)
    assert 0 < kept < 400  # a real loss: some commits survived, later ones did not
    assert set(applied.values()) == {"1"}
    groups = {g["name"]: g for g in client.xinfo_groups(STREAM)}
    # every event whose effect was lost is also un-acked (pending or unread) again:
    # ack, effect and dedupe mark were one transaction in the AOF
    assert groups["billing"]["pending"] + groups["billing"]["lag"] == 400 - kept
    assert client.zcard(seen_key(STREAM, "billing")) == kept
    metrics = Metrics()
    second = Reliable(server.url, consumer="c1", metrics=metrics)
    second.subscriber(STREAM, group="billing", start="0", batch=10, min_idle=0.5)(bill)
    async with second:
        assert await second.drain(timeout=30)
    outcomes = metrics.frame()["outcome"].value_counts().to_dict()
    assert outcomes == {"ok": 400 - kept}  # exactly the lost ones, no duplicate, no retry
    counts = client.hgetall(COUNTS)
    assert len(counts) == 400
    assert set(counts.values()) == {"1"}
    client.close()


async def test_trimmed_while_consumer_down_reported_lost_by_retention(broker, client, caplog):
    """MAXLEN trimming while the consumer is down: on restart it reports the lost entries."""
    caplog.set_level(logging.WARNING, logger="eventlab.consumer")
    streams.publish_many(client, STREAM, _events(10))

    def declare(reliable: Reliable) -> None:
        @reliable.subscriber(STREAM, group="billing", start="0", batch=5)
        async def bill(event: Event, effects: Effects) -> None:
            effects.hincrby(COUNTS, event.id, 1)

    first = Reliable(broker.url)
    declare(first)
    async with first:
        assert await first.drain(timeout=10)
    assert first.health()[f"{STREAM}/billing"].lost == 0
    # consumer down: the producer keeps a 10-entry window, 25 new events push 15 out unread
    streams.publish_many(client, STREAM, _events(25), maxlen=10, approximate=False)
    second = Reliable(broker.url)
    declare(second)
    async with second:
        assert await second.drain(timeout=10)
    assert second.health()[f"{STREAM}/billing"].lost == 15
    assert len(client.hgetall(COUNTS)) == 10 + 10
    assert any("lost by retention" in r.getMessage() for r in caplog.records)


async def test_unexpected_broker_error_marks_the_subscription_failed(broker, client, caplog):
    """A stream key holding the wrong type stops that subscription with health 'failed'."""
    caplog.set_level(logging.ERROR, logger="eventlab.consumer")
    reliable = Reliable(broker.url)

    @reliable.subscriber(STREAM, group="billing", start="0", block=0.05)
    async def bill(_event: Event) -> None:
        pass

    async with reliable:
        client.delete(STREAM)
        client.set(STREAM, "not a stream")
        await _until(
            lambda: reliable.health()[f"{STREAM}/billing"].state == "failed", what="failed"
        )
    health = reliable.health()[f"{STREAM}/billing"]
    assert health.state == "failed"
    assert "WRONGTYPE" in health.reason
    assert any("unexpected error" in r.getMessage() for r in caplog.records)


async def test_restarted_consumer_rereads_its_own_pending_entries_first(broker, client):
    """A consumer restarted under the same name handles its old pending entries at once."""
    streams.publish_many(client, STREAM, _events(9))
    streams.create_group(client, STREAM, "billing", start="0")
    client.xreadgroup("billing", "c1", {STREAM: ">"}, count=9)  # then "crashed"
    reliable = Reliable(broker.url, consumer="c1")

    # more batches than the reader's queue holds: re-reading them must not block the reader
    @reliable.subscriber(STREAM, group="billing", start="0", min_idle=600.0, batch=2)
    async def bill(event: Event, effects: Effects) -> None:
        effects.hincrby(COUNTS, event.id, 1)

    async with reliable:
        assert await reliable.drain(timeout=10)  # long before min_idle
    assert len(client.hgetall(COUNTS)) == 9
    assert _pending(client, "billing") == 0


async def test_stop_releases_reclaimed_entries_without_counting_a_delivery(broker, client):
    """Stopping while the reclaimer holds claimed entries hands them back: no phantom delivery."""
    streams.publish_many(client, STREAM, _events(30))
    streams.create_group(client, STREAM, "billing", start="0")
    client.xreadgroup("billing", "gone", {STREAM: ">"}, count=30)  # a consumer that died
    ids = [i for i, _ in client.xrange(STREAM)]
    client.xclaim(STREAM, "billing", "gone", 0, ids, idle=120_000, justid=True)  # long idle
    gate = asyncio.Event()
    options = {"group": "billing", "start": "0", "batch": 5, "min_idle": 60.0}
    first = Reliable(broker.url, consumer="c1")

    @first.subscriber(STREAM, reclaim_every=0.05, **options)
    async def stuck(event: Event, effects: Effects) -> None:
        await gate.wait()
        effects.hincrby(COUNTS, event.id, 1)

    await first.start()
    # one batch in the handler, two queued, and the reclaimer waiting with a fourth in hand
    await _until(
        lambda: streams.pending_summary(client, STREAM, "billing").consumers.get("c1") == 20,
        what="the reclaimer blocked on a full queue",
    )
    await asyncio.sleep(0.2)  # it claims no more while it waits
    assert streams.pending_summary(client, STREAM, "billing").consumers.get("c1") == 20
    stopping = asyncio.create_task(first.stop())
    await asyncio.sleep(0.05)
    gate.set()  # the batch in hand finishes and is committed
    await asyncio.wait_for(stopping, 30)
    assert len(client.hgetall(COUNTS)) == 5
    rows = client.xpending_range(STREAM, "billing", "-", "+", 100)
    assert len(rows) == 25
    # the 15 claimed but never handled count no delivery: still 1, as when "gone" read them
    assert {r["times_delivered"] for r in rows} == {1}
    # and they are idle at once for the next consumer (min_idle is 60 s)
    second = Reliable(broker.url, consumer="c2")

    @second.subscriber(STREAM, reclaim_every=0.05, **options)
    async def bill(event: Event, effects: Effects) -> None:
        effects.hincrby(COUNTS, event.id, 1)

    async with second:
        assert await second.drain(timeout=20)
    assert set(client.hgetall(COUNTS).values()) == {"1"}
    assert len(client.hgetall(COUNTS)) == 30


@pytest.mark.parametrize("run", range(4))
async def test_entries_claimed_at_start_reach_the_handler_once(broker, client, run):
    """At start the reclaimer and the reader's own-pending pass meet: each entry handled once."""
    stream = f"{{lab:start-{run}}}"
    streams.publish_many(client, stream, _events(30))
    streams.create_group(client, stream, "billing", start="0")
    client.xreadgroup("billing", "gone", {stream: ">"}, count=30)  # a consumer that died
    ids = [i for i, _ in client.xrange(stream)]
    client.xclaim(stream, "billing", "gone", 0, ids, idle=120_000, justid=True)
    calls: list[str] = []
    reliable = Reliable(broker.url, consumer="c1")

    @reliable.subscriber(stream, group="billing", start="0", batch=5, min_idle=60.0)
    async def bill(event: Event) -> None:
        calls.append(event.id)

    async with reliable:
        assert await reliable.drain(timeout=20)
    assert len(calls) == len(set(calls)) == 30


async def test_entry_redelivered_past_max_deliveries_is_dead_lettered_unhandled(broker, client):
    """An entry delivered max_deliveries times without an ack (it kills consumers) is dead."""
    streams.publish(client, STREAM, _events(1)[0])
    streams.create_group(client, STREAM, "billing", start="0")
    ((_, rows),) = client.xreadgroup("billing", "crashy", {STREAM: ">"}, count=1)
    entry_id = rows[0][0]
    for _ in range(3):  # three more deliveries that never acked
        client.xclaim(STREAM, "billing", "crashy", 0, [entry_id])
    calls: list[str] = []
    reliable = Reliable(broker.url)

    @reliable.subscriber(STREAM, group="billing", start="0", min_idle=0.05, max_deliveries=4)
    async def bill(event: Event) -> None:
        calls.append(event.id)

    async with reliable:
        assert await reliable.drain(timeout=10)
    assert calls == []
    (letter,) = dead_letters(client, STREAM)
    assert letter.reason.startswith("delivered 5 times without an ack")
    assert letter.original_id == entry_id


async def test_core_path_on_redis_7_valkey_and_a_cluster(each_store, store_client):
    """Effects, dedupe, dead letters, reclaim, retention hold on both kinds and on a cluster."""
    client = store_client
    streams.publish_many(client, STREAM, _events(30))
    streams.publish(client, STREAM, streams.replay(client, STREAM)[0][1])  # a duplicate id
    client.xadd(STREAM, {"junk": "1"})
    streams.create_group(client, STREAM, "billing", start="0")
    client.xreadgroup("billing", "gone", {STREAM: ">"}, count=5)  # held by a dead consumer
    reliable = Reliable(each_store.url)

    @reliable.subscriber(STREAM, group="billing", start="0", min_idle=0.3, batch=8)
    async def bill(event: Event, effects: Effects) -> None:
        effects.hincrby(COUNTS, event.id, 1)

    async with reliable:
        assert await reliable.drain(timeout=15)
    counts = client.hgetall(COUNTS)
    assert len(counts) == 30
    assert set(counts.values()) == {"1"}
    health = reliable.health()[f"{STREAM}/billing"]
    assert (health.ok, health.duplicates, health.dead, health.reclaimed) == (30, 1, 1, 5)
    assert _pending(client, "billing") == 0


async def test_every_kind_of_entry_in_one_commit_on_redis_7_valkey_and_a_cluster(
    each_store, store_client
):
    """One commit plan of every entry kind and effect is applied alike on each store kind."""
    client = store_client
    n, tags, log = "{lab:orders}:n", "{lab:orders}:tags", "{lab:orders}:log"
    order = "{lab:orders}:o"
    client.hset("{lab:orders}:bad", "sum", "text")
    events = _events(6)
    streams.publish_many(client, STREAM, [*events, events[1]])  # events[1] twice: a duplicate
    metrics = Metrics()
    reliable = Reliable(each_store.url, metrics=metrics)
    failed: list[int] = []

    @reliable.subscriber(
        STREAM, group="billing", start="0", batch=20, attempts=1, min_idle=0.3, max_deliveries=3
    )
    async def bill(event: Event, effects: Effects) -> None:
        which = event.data["n"]
        if which == 1:  # several effects: the dry run, then every op
            effects.incrby(n, 2)
            effects.sadd(tags, "a", "b")
            effects.xadd(log, {"id": event.id}, maxlen=100)
            effects.hset(order, {"status": "billed"})
            effects.hincrby(order, "total", 7)
            effects.guard_version(order, 3)
            effects.set("{lab:orders}:last", event.id, ttl=60)
        elif which == 2:  # fails in Redis after a good effect: nothing of it applied
            effects.incrby(n, 100)
            effects.hincrby("{lab:orders}:bad", "sum", 1)
        elif which == 3:
            raise PermanentError("refused")
        elif which == 4 and not failed:  # transient: released once, then redelivered
            failed.append(which)
            raise ConnectionError("gateway timed out")
        elif which == 5:
            effects.delete(tags)
            effects.hincrby(COUNTS, "deleted", 1)
        effects.hincrby(COUNTS, "handled", 1)  # 0 also has no other effect

    async with reliable:
        assert await reliable.drain(timeout=15)
    outcomes = metrics.frame().groupby("outcome").size().to_dict()
    assert outcomes == {"ok": 4, "duplicate": 1, "dead": 2, "retry": 1}
    assert client.get(n) == "2"
    assert client.exists(tags) == 0
    assert client.xlen(log) == 1
    assert client.hgetall(order) == {"status": "billed", "total": "7", "version": "3"}
    assert client.get("{lab:orders}:last") == events[1].id
    assert client.hgetall(COUNTS) == {"handled": "4", "deleted": "1"}
    assert client.hgetall("{lab:orders}:bad") == {"sum": "text"}
    reasons = sorted(letter.error for letter in dead_letters(client, STREAM))
    assert reasons == ["EffectError", "eventlab.consumer._types.PermanentError"]
    assert _pending(client, "billing") == 0


def test_dlq_command_lists_and_redrives(broker, client, monkeypatch, capsys):
    """`eventlab dlq orders` lists dead letters; `--redrive` moves them back once."""
    from eventlab import cli  # noqa: PLC0415

    monkeypatch.setenv("REDIS_URL", broker.url)
    event = _events(1)[0]
    client.xadd(
        f"{STREAM}:dlq",
        {**event.to_fields(), "dlqgroup": "billing", "dlqreason": "boom", "dlqerror": "ValueError"},
    )
    assert cli.main(["dlq", "orders"]) == 0
    out = capsys.readouterr().out
    assert "billing" in out
    assert "ValueError: boom" in out
    assert "1 dead letters in {lab:orders}:dlq" in out
    assert cli.main(["dlq", "orders", "--redrive"]) == 0
    assert "redrove 1 dead letters" in capsys.readouterr().out
    assert cli.main(["dlq", "orders", "--redrive"]) == 0
    assert "redrove 0 dead letters" in capsys.readouterr().out
    assert [e.id for _, e in streams.replay(client, STREAM)] == [event.id]


async def test_pending_entries_trimmed_before_reclaim_are_reported_lost(broker, client):
    """Entries a dead consumer held and MAXLEN then trimmed are counted lost and leave the PEL."""
    streams.create_group(client, STREAM, "billing", start="0")
    streams.publish_many(client, STREAM, _events(5))
    client.xreadgroup("billing", "gone", {STREAM: ">"}, count=3)  # held, never acked
    client.xtrim(STREAM, maxlen=2, approximate=False)  # keeps 2 unread; the 3 held go
    reliable = Reliable(broker.url)

    @reliable.subscriber(STREAM, group="billing", start="0", min_idle=0.05)
    async def bill(event: Event, effects: Effects) -> None:
        effects.hincrby(COUNTS, event.id, 1)

    async with reliable:
        assert await reliable.drain(timeout=10)
    health = reliable.health()[f"{STREAM}/billing"]
    assert health.lost == 3  # all three held entries were trimmed before a reclaim
    assert health.reclaimed == 0
    assert len(client.hgetall(COUNTS)) == 2
    assert _pending(client, "billing") == 0


async def test_validation_failure_dead_letters_at_once_and_valid_events_are_replaced(
    broker, client
):
    """A validate hook that raises dead-letters the event; what it returns reaches the handler."""
    streams.publish_many(
        client,
        STREAM,
        [Event(type="OrderPlaced", source="orders", data=d) for d in ({"qty": 2}, {"qty": -1})],
    )
    seen: list[dict] = []

    def validate(event: Event) -> Event:
        if event.data["qty"] < 0:
            raise ValueError("qty must be positive")
        return event.evolve(data={**event.data, "currency": "EUR"})  # a default filled in

    reliable = Reliable(broker.url)

    @reliable.subscriber(STREAM, group="billing", start="0", validate=validate, attempts=3)
    async def bill(event: Event) -> None:
        seen.append(event.data)

    async with reliable:
        assert await reliable.drain(timeout=10)
    assert seen == [{"qty": 2, "currency": "EUR"}]
    (letter,) = dead_letters(client, STREAM)
    assert letter.reason == "failed validation: ValueError: qty must be positive"
    assert letter.attempts == 1


@pytest.mark.slow  # ~5-10 s of chaos: `make test` runs it, `make check` does not
async def test_broker_paused_longer_than_socket_timeout_then_resumes(fresh_broker):
    """A broker frozen (SIGSTOP) past the client timeout: the consumer recovers, effects once."""
    server = fresh_broker()
    client = server.client()
    streams.publish_many(client, STREAM, _events(1500))
    reliable = Reliable(server.url)

    @reliable.subscriber(STREAM, group="billing", start="0", batch=20, min_idle=2.0)
    async def bill(event: Event, effects: Effects) -> None:
        await asyncio.sleep(0.001)
        effects.hincrby(COUNTS, event.id, 1)

    async with reliable:
        await _until(lambda: client.hlen(COUNTS) >= 100, what="first effects")
        server.pause(6.0)  # longer than the runtime's socket timeout (block + 5 s)
        await asyncio.sleep(0.5)
        assert await reliable.drain(timeout=40)
        health = reliable.health()[f"{STREAM}/billing"]
        assert health.ok + health.duplicates >= 1500
        assert health.state == "running"
    counts = client.hgetall(COUNTS)
    assert len(counts) == 1500
    assert set(counts.values()) == {"1"}
    client.close()


def _bytes_client(client: redis.Redis) -> redis.Redis:
    """Another client on the same server that writes and reads bytes, not text."""
    if isinstance(client, redis.RedisCluster):
        node = client.get_default_node()
        return redis.RedisCluster(host=node.host, port=node.port, decode_responses=False)  # type: ignore[return-value]
    kwargs = client.connection_pool.connection_kwargs
    return redis.Redis(host=kwargs["host"], port=kwargs["port"], decode_responses=False)


def _raw_entries(client: redis.Redis) -> tuple[list[Event], list[dict[bytes, bytes]]]:
    """Two good events around three entries that are not UTF-8, written by a bytes client."""
    good = _events(2)
    raw = _bytes_client(client)
    fields = good[0].to_fields()
    bad = [
        {**{k.encode(): v.encode() for k, v in fields.items()}, b"data": b'{"n": "\xff\xfe"}'},
        {**{k.encode(): v.encode() for k, v in fields.items()}, b"type": b"Order\xc3"},
        {b"\xffname": b"x", b"type": b"OrderPlaced"},
    ]
    streams.publish(client, STREAM, good[0])
    for entry in bad:
        raw.xadd(STREAM, entry)  # type: ignore[arg-type]
    streams.publish(client, STREAM, good[1])
    raw.close()
    return good, bad


async def test_entries_that_are_not_utf8_are_dead_lettered_raw_and_the_rest_handled(broker, client):
    """Invalid UTF-8 in a name, type or data: dead-lettered raw; the neighbours are handled."""
    good, bad = _raw_entries(client)
    reliable = Reliable(broker.url, consumer="c1")

    @reliable.subscriber(STREAM, group="billing", start="0")
    async def bill(event: Event, effects: Effects) -> None:
        effects.hincrby(COUNTS, event.id, 1)

    async with reliable:
        assert await reliable.drain(timeout=15)
        assert reliable.subscriptions[0].health.state == "running"
    assert client.hgetall(COUNTS) == {e.id: "1" for e in good}
    assert _pending(client, "billing") == 0
    letters = dead_letters(client, STREAM)
    assert [d.raw for d in letters] == bad  # the exact bytes, kept
    assert all(d.reason.startswith("not a valid event: not UTF-8") for d in letters)
    assert all(d.error == "UnicodeDecodeError" for d in letters)
    assert "data: not UTF-8" in letters[0].reason
    assert "\\xff" in letters[0].fields["data"]  # text form escapes the bad bytes
    # redrive moves the raw bytes back unchanged (and the consumer dead-letters them again)
    moved = redrive(client, STREAM)
    assert len(moved) == 3
    raw = _bytes_client(client)
    back = [dict(f) for i, f in raw.xrange(STREAM) if i.decode() in moved]
    raw.close()
    assert back == bad
    assert dead_letters(client, STREAM) == []


async def test_reclaimed_entries_that_are_not_utf8_are_dead_lettered(broker, client):
    """A crashed consumer's pending entries with invalid UTF-8 are reclaimed and dead-lettered."""
    good, bad = _raw_entries(client)
    streams.create_group(client, STREAM, "billing", start="0")
    raw = _bytes_client(client)
    raw.xreadgroup("billing", "gone", {STREAM: ">"}, count=10)  # then it died
    raw.close()
    reliable = Reliable(broker.url, consumer="c1")

    @reliable.subscriber(STREAM, group="billing", start="0", min_idle=0.1, reclaim_every=0.05)
    async def bill(event: Event, effects: Effects) -> None:
        effects.hincrby(COUNTS, event.id, 1)

    async with reliable:
        assert await reliable.drain(timeout=15)
        health = reliable.subscriptions[0].health
    assert health.state == "running"
    assert health.reclaimed == 5
    assert client.hgetall(COUNTS) == {e.id: "1" for e in good}
    assert [d.raw for d in dead_letters(client, STREAM)] == bad
    assert _pending(client, "billing") == 0


async def test_commit_refused_at_maxmemory_applies_nothing_until_memory_is_freed(
    fresh_broker, caplog
):
    """At maxmemory the commit script is refused whole (script flags); it commits once freed."""
    for kind in ("redis", "valkey"):
        handle = fresh_broker(kind)
        client = handle.client()
        events = _events(5)
        streams.publish_many(client, STREAM, events)
        streams.create_group(client, STREAM, "billing", start="0")
        client.config_set("maxmemory-policy", "noeviction")
        client.config_set("maxmemory", 1)  # every write that can grow memory is refused
        with pytest.raises(redis.exceptions.OutOfMemoryError):
            client.xadd(STREAM, {"x": "1"})  # producers are refused ...
        reliable = Reliable(handle.url, consumer="c1")

        @reliable.subscriber(STREAM, group="billing", start="0", min_idle=60.0)
        async def bill(event: Event, effects: Effects) -> None:
            effects.hincrby(COUNTS, event.id, 1)

        with caplog.at_level(logging.ERROR, logger="eventlab.consumer"):
            async with reliable:
                sub = reliable.subscriptions[0]
                await _until(lambda: sub.health.state == "out-of-memory", what="OOM state")  # noqa: B023
                await asyncio.sleep(0.5)
                # ... and so are the consumers' commits: nothing written, all still pending
                assert client.exists(COUNTS) == 0
                assert _pending(client, "billing") == 5
                assert "maxmemory" in sub.health.reason
                client.config_set("maxmemory", 0)
                assert await reliable.drain(timeout=15)
                assert sub.health.state == "running"
        assert client.hgetall(COUNTS) == {e.id: "1" for e in events}
        assert "maxmemory limit" in caplog.text
        client.close()


def _config_set(client: redis.Redis, name: str, value: object) -> None:
    """CONFIG SET on the server (on a cluster: on every node; config is per node)."""
    if isinstance(client, redis.RedisCluster):
        client.config_set(name, value, target_nodes=redis.RedisCluster.ALL_NODES)
    else:
        client.config_set(name, value)


def test_redrive_at_maxmemory_is_a_clear_error(client):
    """A redrive the broker refuses for lack of memory raises an EventlabError naming the fix."""
    client.xadd(f"{STREAM}:dlq", {"id": "e1", "dlqreason": "x"})
    _config_set(client, "maxmemory-policy", "noeviction")
    _config_set(client, "maxmemory", 1)
    try:
        with pytest.raises(EventlabError, match="maxmemory") as caught:
            redrive(client, STREAM)
        assert "CONFIG SET maxmemory" in caught.value.fix
    finally:
        _config_set(client, "maxmemory", 0)
    assert client.xlen(f"{STREAM}:dlq") == 1


async def test_dedupe_store_and_dead_letters_are_bounded_by_default(broker, client):
    """Defaults bound the dedupe store and the dead letters; past a bound the oldest go first."""
    from eventlab.consumer import DEDUPE_MAX, DLQ_MAXLEN  # noqa: PLC0415

    events = _events(250)
    streams.publish_many(client, STREAM, events)
    reliable = Reliable(broker.url, consumer="c1")

    @reliable.subscriber(STREAM, group="billing", start="0", dedupe_max=100, batch=50)
    async def bill(event: Event, effects: Effects) -> None:
        effects.hincrby(COUNTS, event.id, 1)

    @reliable.subscriber(STREAM, group="audit", start="0")
    async def refuse(event: Event) -> None:
        raise PermanentError(f"audit refuses {event.id}")

    audit = reliable.subscriptions[1]
    assert (audit.options.dlq_maxlen, audit.options.dedupe_max) == (DLQ_MAXLEN, DEDUPE_MAX)
    # the default, scaled down for the test
    audit.options = dataclasses.replace(audit.options, dlq_maxlen=100)
    async with reliable:
        assert await reliable.drain(timeout=30)
    seen = client.zrange(seen_key(STREAM, "billing"), 0, -1)
    assert len(seen) == 100  # at the bound: the newest 100 ids are remembered
    assert set(seen) <= {e.id for e in events[100:]}
    assert len(client.hgetall(COUNTS)) == 250  # every event applied once
    # MAXLEN ~ trims whole stream nodes: about the bound, never all 250
    assert 100 <= client.xlen(f"{STREAM}:dlq") < 250


def test_subscriber_options_are_one_record_shown_in_its_signature():
    """Options are SubscriptionOptions' fields: a typo names the known ones; help() lists them."""
    reliable = Reliable("redis://127.0.0.1:1/0")
    with pytest.raises(ConsumerError, match="unknown subscriber option") as err:
        reliable.subscriber(STREAM, group="g", start="0", min_idel=1.0)
    assert "min_idle" in err.value.fix
    shown = list(inspect.signature(Reliable.subscriber).parameters)
    assert shown == ["self", "stream", *(f.name for f in dataclasses.fields(SubscriptionOptions))]

    @reliable.subscriber(STREAM, group="g", start="$", attempts=2)
    def handle(event):
        return event

    sub = reliable.subscriptions[0]
    assert (sub.options.attempts, sub.options.min_idle, sub.batch, sub.block) == (2, 30.0, 100, 0.2)


async def test_partitions_spread_over_a_cluster_are_each_handled_once(cluster):
    """Partition streams land on different primaries; one runtime reads them all, once each."""
    client = cluster.client()
    client.flushall()
    parts = [streams.stream_key(f"orders-{n}") for n in range(6)]
    assert len({cluster.primary_of(key) for key in parts}) >= 2
    for key in parts:
        streams.publish_many(client, key, _events(20))
        client.xadd(key, {"junk": "1"})
    reliable = Reliable(cluster.broker)
    for key in parts:

        @reliable.subscriber(key, group="billing", start="0", batch=7)
        async def bill(event: Event, effects: Effects, key: str = key) -> None:
            effects.hincrby(f"{key}:counts", event.id, 1)

    async with reliable:
        assert await reliable.drain(timeout=20)
    for key in parts:
        assert set(client.hgetall(f"{key}:counts").values()) == {"1"}
        assert len(client.hgetall(f"{key}:counts")) == 20
        assert [d.reason for d in dead_letters(client, key)] != []
    client.close()
