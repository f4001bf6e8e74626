"""Metrics: the exact frame contracts, bounded memory, lag sampling on a real broker."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime

import pandas as pd

from eventlab import streams
from eventlab.consumer import Effects, Reliable
from eventlab.envelope import Event
from eventlab.metrics import EVENT_COLUMNS, LAG_COLUMNS, Metrics

STREAM = "lab:{orders}"
UTC_NS = pd.DatetimeTZDtype("ns", "UTC")


def _record(metrics: Metrics, n: int, outcome: str = "ok") -> None:
    metrics.record(
        id=f"e{n}",
        type="OrderPlaced",
        correlationid="c1",
        causationid=None,
        source="orders",
        stream=STREAM,
        group="billing",
        consumer="b1",
        emitted=datetime(2026, 1, 1, tzinfo=UTC),
        received=1_767_225_600.5,
        handled=1_767_225_601.0,
        attempt=n,
        outcome=outcome,  # type: ignore[arg-type]
    )


def test_frame_has_the_contract_columns_and_types_even_when_empty():
    """frame() and lag_frame() have the exact columns and UTC ns datetimes, rows or not."""
    for metrics in (Metrics(), _filled()):
        frame = metrics.frame()
        assert list(frame.columns) == list(EVENT_COLUMNS)
        for column in ("emitted", "received", "handled"):
            assert frame[column].dtype == UTC_NS
        assert frame["attempt"].dtype == "int64"
        lags = metrics.lag_frame()
        assert list(lags.columns) == list(LAG_COLUMNS)
        assert lags["time"].dtype == UTC_NS


def _filled() -> Metrics:
    metrics = Metrics()
    _record(metrics, 1)
    metrics.record_sample(stream=STREAM, group="billing", length=3, lag=None, pending=1, at=1.0)
    return metrics


def test_recorded_values_come_back_as_timestamps():
    """A recorded row keeps its ids, outcome and times (seconds become UTC timestamps)."""
    metrics = Metrics()
    _record(metrics, 2, "retry")
    row = metrics.frame().iloc[0]
    assert (row["id"], row["outcome"], row["attempt"]) == ("e2", "retry", 2)
    assert row["received"] == pd.Timestamp("2026-01-01 00:00:00.5", tz="UTC")
    assert row["handled"] - row["received"] == pd.Timedelta(seconds=0.5)
    assert row["emitted"] == pd.Timestamp("2026-01-01", tz="UTC")


def test_memory_is_bounded():
    """Only the newest max_rows rows are kept, so leaving metrics on cannot grow memory forever."""
    metrics = Metrics(max_rows=3)
    for n in range(5):
        _record(metrics, n)
    assert list(metrics.frame()["id"]) == ["e2", "e3", "e4"]
    metrics.clear()
    assert len(metrics) == 0


async def test_sampler_records_length_lag_and_pending(broker, client):
    """The sampler reads XINFO GROUPS: length, lag and pending per group over time."""
    streams.create_group(client, STREAM, "billing", start="0")
    streams.publish_many(client, STREAM, _events(7))
    client.xreadgroup("billing", "c", {STREAM: ">"}, count=3)
    metrics = Metrics()
    assert metrics.sample(client, [STREAM, "lab:{missing}"]) == 1
    aclient = broker.async_client()
    task = asyncio.create_task(metrics.sampler(aclient, [STREAM], every=0.01))
    while len(metrics.lag_frame()) < 3:
        await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    await aclient.aclose()
    frame = metrics.lag_frame()
    first = frame.iloc[0]
    assert (first["stream"], first["group"], first["length"]) == (STREAM, "billing", 7)
    assert (first["lag"], first["pending"]) == (4, 3)
    assert frame["time"].is_monotonic_increasing


def _events(n: int) -> list[Event]:
    return [Event(type="OrderPlaced", source="orders", data={"n": i}) for i in range(n)]


async def test_reliable_consumer_records_emit_receive_handle_in_order(broker, client):
    """Each handled event has emitted <= received <= handled and its correlation id."""
    root = Event(type="OrderPlaced", source="orders", data={})
    events = [root, root.follow(type="OrderPaid", source="billing")]
    before = time.time()
    streams.publish_many(client, STREAM, events)
    metrics = Metrics()
    reliable = Reliable(broker.url, metrics=metrics, consumer="b1")

    @reliable.subscriber(STREAM, group="billing", start="0")
    async def bill(_event: Event, effects: Effects) -> None:
        effects.incrby("lab:{orders}:n", 1)

    async with reliable:
        assert await reliable.drain(timeout=10)
    frame = metrics.frame()
    assert list(frame["id"]) == [e.id for e in events]
    assert set(frame["correlationid"]) == {root.id}
    assert frame["causationid"].iloc[1] == root.id
    assert (frame["emitted"] <= frame["received"]).all()
    assert (frame["received"] <= frame["handled"]).all()
    assert (frame["received"] >= pd.Timestamp(before, unit="s", tz="UTC")).all()
    assert set(frame["consumer"]) == {"b1"}


def test_default_bound_fits_a_laptop():
    """The default keeps the newest 50,000 rows (~23 MB), dropping the oldest past it."""
    metrics = Metrics()
    row = ("e", "T", "c", "c", "s", "lab:{o}", "g", "c1", None, 0.0, 0.0, 1, "ok")
    metrics.extend([row] * 50_000)
    metrics.extend([("last", *row[1:])])
    assert len(metrics) == 50_000
    assert metrics.frame()["id"].iloc[-1] == "last"
