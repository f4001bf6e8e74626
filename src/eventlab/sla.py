"""Head-of-line blocking, and a retry budget bounded by the latency SLA.

A consumer that processes a partition **in order** handles one event at a time:
while it retries a *poison* event at the head (one that fails every time with an
error that looks transient), every event behind it waits. Their end-to-end
latency (emitted → handled) and the group's lag climb for as long as the retries
last. A **retry budget** bounds that wait: the runtime's ``retry_timeout``
(seconds of in-process tries for one event) set *below the SLA*, with
``max_deliveries=1``, moves the poison event to the dead letters once its budget
is spent, and the queue drains within the SLA.

:func:`head_of_line` runs that scenario on the real broker with
:class:`eventlab.consumer.Reliable` and returns per-event latency and lag samples;
:func:`chart` draws one or more runs against the SLA.

Introduced in lesson 04 ("Head-of-line blocking and a retry budget").
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import altair as alt
import pandas as pd
import redis
import redis.asyncio

from eventlab import streams
from eventlab._errors import EventlabError
from eventlab.consumer import Backoff, Effects, Reliable
from eventlab.envelope import Event
from eventlab.metrics import Metrics

__all__ = ["HeadOfLine", "chart", "head_of_line"]

_GROUP = "billing"


@dataclass(frozen=True, slots=True)
class HeadOfLine:
    """One run of :func:`head_of_line`.

    Attributes:
        label: ``"no budget"`` or ``"budget <s> s"``.
        sla: The latency SLA in seconds.
        budget: The retry budget in seconds (``None``: retried until the window ends).
        latency: One row per event behind the poison: ``position`` (1 = right behind
            it), ``seconds`` (emitted → handled; for an event never handled, emitted →
            end of the window, a lower bound) and ``handled`` (bool).
        lag: Lag samples: ``seconds`` since the events were published, ``lag``, ``pending``.
        dead: Events dead-lettered (the poison, when the budget moved it).
    """

    label: str
    sla: float
    budget: float | None
    latency: pd.DataFrame
    lag: pd.DataFrame
    dead: int

    @property
    def worst(self) -> float:
        """The largest latency of an event behind the poison (seconds)."""
        return float(self.latency["seconds"].max())


async def head_of_line(
    url: str,
    stream: str,
    *,
    sla: float,
    budget: float | None,
    behind: int = 10,
    window: float | None = None,
    sample_every: float = 0.05,
    handle_seconds: float = 0.0,
) -> HeadOfLine:
    """Publish a poison event then ``behind`` events; consume in order; measure their latency.

    Args:
        url: The broker.
        stream: A stream of the lesson's own (deleted first, with its dead letters).
        sla: Seconds an event may take from emitted to handled.
        budget: Retry budget in seconds (``retry_timeout``, then dead letter), or
            ``None`` for no budget: retried for the whole window.
        behind: Events published right after the poison.
        window: Seconds to watch (default ``2 * sla``); the run ends earlier once drained.
        sample_every: Seconds between lag samples.
        handle_seconds: Seconds the handler takes for each good event (in order, so the
            last of ``behind`` waits for all of them too).
    """
    if sla <= 0 or (budget is not None and not 0 < budget < sla):
        raise EventlabError(
            f"sla={sla}, budget={budget}", fix="pass sla > 0 and 0 < budget < sla (seconds)"
        )
    watch = 2 * sla if window is None else window
    client = redis.Redis.from_url(url, decode_responses=True)
    client.delete(stream, streams.dlq_key(stream))
    streams.create_group(client, stream, _GROUP, start="0")
    poison = Event(type="PaymentRequested", source="orders", subject="poison", data={"poison": 1})
    queue = [
        Event(type="PaymentRequested", source="orders", subject=f"order-{n}", data={})
        for n in range(1, behind + 1)
    ]
    metrics = Metrics()
    reliable = Reliable(url, metrics=metrics, consumer="c1")

    @reliable.subscriber(
        stream,
        group=_GROUP,
        start="0",
        attempts=1_000_000,
        backoff=Backoff(initial=0.05, maximum=0.05, jitter=0.0),
        retry_timeout=watch * 10 if budget is None else budget,
        max_deliveries=1 if budget is not None else 1000,
        min_idle=watch * 10,
    )
    async def handle(event: Event, effects: Effects) -> None:  # noqa: ARG001 - no effect needed
        if event.data.get("poison"):
            raise ConnectionError("the provider rejects this one every time")
        if handle_seconds:
            await asyncio.sleep(handle_seconds)

    aclient = redis.asyncio.Redis.from_url(url, decode_responses=True)
    sampler = asyncio.create_task(metrics.sampler(aclient, [stream], every=sample_every))
    started = time.time()
    streams.publish_many(client, stream, [poison, *queue])
    await reliable.start()
    try:
        deadline = time.monotonic() + watch
        while time.monotonic() < deadline and not _drained(client, stream, len(queue) + 1):  # noqa: ASYNC110 - polls the broker's group state
            await asyncio.sleep(0.02)
        ended = time.time()
    finally:
        await reliable.stop(timeout=0.1)
        sampler.cancel()
        await asyncio.gather(sampler, return_exceptions=True)
        await aclient.aclose()
    dead = int(client.xlen(streams.dlq_key(stream)))
    client.close()
    return HeadOfLine(
        label="no budget" if budget is None else f"budget {budget:g} s",
        sla=sla,
        budget=budget,
        latency=_latency(metrics.frame(), queue, ended),
        lag=_lag(metrics.lag_frame(), started),
        dead=dead,
    )


def _drained(client: redis.Redis, stream: str, total: int) -> bool:
    groups: list[dict[str, Any]] = client.xinfo_groups(stream)
    [group] = [g for g in groups if g["name"] == _GROUP]
    return int(group["pending"]) == 0 and int(group["entries-read"] or 0) >= total


def _latency(frame: pd.DataFrame, queue: Sequence[Event], ended: float) -> pd.DataFrame:
    ok = frame[frame["outcome"] == "ok"].drop_duplicates("id")
    done: dict[str, float] = {
        str(i): pd.Timestamp(t).timestamp() for i, t in zip(ok["id"], ok["handled"], strict=True)
    }
    rows = [
        {
            "position": position,
            "seconds": done.get(event.id, ended) - event.time.timestamp(),
            "handled": event.id in done,
        }
        for position, event in enumerate(queue, start=1)
    ]
    return pd.DataFrame(rows, columns=["position", "seconds", "handled"])


def _lag(frame: pd.DataFrame, started: float) -> pd.DataFrame:
    origin = pd.Timestamp(started, unit="s", tz="UTC")
    seconds = (frame["time"] - origin).dt.total_seconds()
    return pd.DataFrame(
        {"seconds": seconds, "lag": frame["lag"].astype("float64"), "pending": frame["pending"]}
    )


def chart(runs: Sequence[HeadOfLine]) -> alt.HConcatChart:
    """Lag over time and latency per event behind the poison, one colour per run, the SLA a rule."""
    lag = pd.concat([r.lag.assign(run=r.label) for r in runs], ignore_index=True)
    latency = pd.concat([r.latency.assign(run=r.label) for r in runs], ignore_index=True)
    sla = pd.DataFrame({"sla": [runs[0].sla]})
    color = alt.Color("run:N", title=None)
    left = (
        alt.Chart(lag, title="Lag behind the poison event")
        .mark_line(interpolate="step-after")
        .encode(
            x=alt.X("seconds:Q", title="seconds"), y=alt.Y("lag:Q", title="events"), color=color
        )
        .properties(width=260, height=180)
    )
    bars = (
        alt.Chart(latency, title="Latency of each event behind it")
        .mark_line(point=True)
        .encode(
            x=alt.X("position:O", title="position behind the poison"),
            y=alt.Y("seconds:Q", title="seconds, emitted → handled"),
            color=color,
        )
    )
    rule = alt.Chart(sla).mark_rule(strokeDash=[4, 4]).encode(y="sla:Q")
    return alt.hconcat(left, (bars + rule).properties(width=260, height=180))
