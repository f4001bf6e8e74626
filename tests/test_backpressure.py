"""Backpressure: token bucket, lag-aware throttle, priority reads and retention loss."""

from __future__ import annotations

import asyncio

import pytest

from eventlab import streams
from eventlab.backpressure import (
    RETENTION_COLUMNS,
    LagThrottle,
    TokenBucket,
    alost_by_retention,
    apublish_throttled,
    group_load,
    lost_by_retention,
    priority_read,
    retention_frame,
)
from eventlab.consumer import Reliable
from eventlab.envelope import Event

STREAM = "lab:{orders}"


def _events(n: int) -> list[Event]:
    return [Event(type="OrderPlaced", source="orders", data={"n": i}) for i in range(n)]


class FakeClock:
    """A clock the test moves by hand (no timed tests)."""

    def __init__(self) -> None:
        """Start at an arbitrary time."""
        self.now = 100.0

    def __call__(self) -> float:
        """Return the current fake time in seconds."""
        return self.now


def test_token_bucket_allows_a_burst_then_the_rate():
    """A full bucket passes `burst` events at once, then one per 1/rate seconds."""
    clock = FakeClock()
    bucket = TokenBucket(10.0, burst=3, clock=clock)
    assert [bucket.try_acquire() for _ in range(4)] == [True, True, True, False]
    clock.now += 0.1
    assert bucket.try_acquire()
    assert not bucket.try_acquire()
    assert bucket.reserve() == pytest.approx(0.1)
    assert bucket.reserve() == pytest.approx(0.2)  # debts queue up
    clock.now += 10
    assert bucket.tokens == pytest.approx(3.0)  # never more than the burst


def test_token_bucket_rejects_bad_settings():
    """Rates and bursts must be positive; a request larger than the bucket never fits."""
    with pytest.raises(ValueError, match="rate"):
        TokenBucket(0)
    with pytest.raises(ValueError, match="burst"):
        TokenBucket(5, burst=0.5)
    with pytest.raises(ValueError, match="cannot take"):
        TokenBucket(5, burst=2).reserve(3)


async def test_token_bucket_acquire_waits_what_it_reserved():
    """Acquire returns the wait the bucket imposed, so a producer can chart it."""
    clock = FakeClock()
    bucket = TokenBucket(1000.0, burst=1, clock=clock)
    assert await bucket.acquire() == 0.0
    assert await bucket.acquire() == pytest.approx(0.001)
    assert bucket.acquire_sync() == pytest.approx(0.002)


async def test_lag_throttle_holds_the_producer_until_the_group_catches_up(broker, client):
    """The throttle waits while lag > max_lag and lets the producer go once the group caught up."""
    streams.create_group(client, STREAM, "billing", start="0")
    streams.publish_many(client, STREAM, _events(10))
    aclient = broker.async_client()
    throttle = LagThrottle(aclient, STREAM, "billing", max_lag=5, poll=0.01)
    assert group_load(client, STREAM, "billing").lag == 10
    with pytest.raises(TimeoutError, match="max_lag=5"):
        await throttle.wait(timeout=0.05)
    waiter = asyncio.create_task(throttle.wait(timeout=10))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    client.xreadgroup("billing", "c", {STREAM: ">"}, count=6)
    assert await waiter > 0
    assert throttle.waited > 0
    await aclient.aclose()


async def test_lag_throttle_bounds_pending_too(broker, client):
    """With max_pending, delivered-but-unacked entries also hold the producer."""
    streams.create_group(client, STREAM, "billing", start="0")
    streams.publish_many(client, STREAM, _events(4))
    client.xreadgroup("billing", "c", {STREAM: ">"}, count=4)
    aclient = broker.async_client()
    throttle = LagThrottle(aclient, STREAM, "billing", max_lag=100, max_pending=2)
    with pytest.raises(TimeoutError):
        await throttle.wait(timeout=0.05)
    ids = [i for i, _ in client.xrange(STREAM)]
    client.xack(STREAM, "billing", *ids[:3])
    assert await throttle.wait(timeout=1) >= 0
    await aclient.aclose()


async def test_throttled_producer_keeps_lag_bounded_with_a_slow_consumer(broker, client):
    """A producer throttled on the group's lag never runs more than max_lag ahead."""
    aclient = broker.async_client()
    reliable = Reliable(broker.url)
    blocked = asyncio.Event()

    class Watched(LagThrottle):
        def over(self, load):  # a probe: tells the consumer the producer is held
            stuck = super().over(load)
            if stuck:
                blocked.set()
            return stuck

    @reliable.subscriber(STREAM, group="billing", start="0", batch=5, block=0.02)
    async def slow(_event: Event) -> None:
        # the consumer is slower than the producer by construction, not by luck: it
        # handles nothing until the throttle has found the group over its bound
        await blocked.wait()
        await asyncio.sleep(0.002)

    lags: list[int] = []
    async with reliable:
        throttle = Watched(aclient, STREAM, "billing", max_lag=20, check_every=0, poll=0.01)
        for event in _events(150):
            await apublish_throttled(aclient, STREAM, [event], throttle=throttle)
            lag = group_load(client, STREAM, "billing").lag
            assert lag is not None
            lags.append(lag)
        assert await reliable.drain(timeout=20)
    assert max(lags) <= 21
    assert throttle.waited > 0
    await aclient.aclose()


async def test_priority_read_serves_the_high_stream_first(broker, client):
    """Entries on a higher-priority stream are read before an older backlog on a lower one."""
    high, low = "lab:{pay-high}", "lab:{pay-low}"
    for stream in (high, low):
        streams.create_group(client, stream, "pay", start="0")
    streams.publish_many(client, low, _events(5))
    streams.publish_many(client, high, _events(2))
    aclient = broker.async_client()
    order = []
    while got := await priority_read(
        aclient, group="pay", consumer="c", streams=[high, low], count=3
    ):
        order.append((got[0], len(got[1])))
    assert order == [(high, 2), (low, 3), (low, 2)]
    assert (
        await priority_read(aclient, group="pay", consumer="c", streams=[high, low], block=0.01)
        is None
    )
    streams.publish(client, low, _events(1)[0])
    got = await priority_read(aclient, group="pay", consumer="c", streams=[high, low], block=1.0)
    assert got is not None
    assert got[0] == low
    await aclient.aclose()


async def test_lost_by_retention_counts_entries_trimmed_before_a_group_read_them(broker, client):
    """Entries trimmed by MAXLEN before a group read them are counted, exactly."""
    streams.create_group(client, STREAM, "fast", start="0")
    streams.create_group(client, STREAM, "slow", start="0")
    streams.publish_many(client, STREAM, _events(10))
    client.xreadgroup("slow", "c", {STREAM: ">"}, count=5)
    client.xreadgroup("fast", "c", {STREAM: ">"}, count=10)
    streams.publish_many(client, STREAM, _events(20), maxlen=10, approximate=False)
    slow = lost_by_retention(client, STREAM, "slow")
    assert (slow.lost, slow.unread) == (15, 10)
    fast = lost_by_retention(client, STREAM, "fast")
    assert (fast.lost, fast.unread) == (10, 10)
    aclient = broker.async_client()
    assert await alost_by_retention(aclient, STREAM, "slow") == slow
    await aclient.aclose()
    frame = retention_frame(client, [STREAM])
    assert list(frame.columns) == list(RETENTION_COLUMNS)
    assert dict(zip(frame["group"], frame["lost"], strict=True)) == {"fast": 10, "slow": 15}


def test_no_loss_without_trimming_and_unknown_group_is_an_error(client):
    """A group that keeps up loses nothing; asking about a missing group fails clearly."""
    streams.create_group(client, STREAM, "billing", start="0")
    streams.publish_many(client, STREAM, _events(6))
    client.xreadgroup("billing", "c", {STREAM: ">"}, count=2)
    loss = lost_by_retention(client, STREAM, "billing")
    assert (loss.lost, loss.unread) == (0, 4)
    with pytest.raises(LookupError, match="nobody"):
        lost_by_retention(client, STREAM, "nobody")
