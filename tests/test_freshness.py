"""eventlab.freshness: reads of a real view and the log's writes, judged by stale_reads."""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest

from eventlab import checker, freshness, streams
from eventlab._errors import EventlabError
from eventlab.envelope import Event
from eventlab.history import History
from eventlab.shop.projections import REVENUE_PER_HOUR, STATUS_BOARD


def test_a_view_behind_the_log_is_stale_until_it_catches_up(client):
    """A view read right after XADD misses the write (stale); once it catches up, fresh."""
    stream, view = streams.stream_key("fresh"), streams.stream_key("fresh-view")
    h = History()
    streams.publish(client, stream, Event(type="OrderPlaced", source="t", subject="o1"))
    h.ok("storefront", "write", {"key": "o1", "version": 1})  # the XADD returned: acknowledged

    def read():
        return client.hgetall(view)

    assert freshness.read_view(h, read, ["o1"]) == {"o1": 0}  # the projector has not run
    client.hset(view, "o1", "placed")
    streams.publish(client, stream, Event(type="OrderConfirmed", source="t", subject="o1"))
    client.hset(view, "o1", "confirmed")
    reads = asyncio.run(freshness.watch_view(h, read, ["o1"], interval=0.01))
    assert reads == 1  # already final: one read
    assert freshness.log_writes(h, client, stream) == 2
    strict = checker.stale_reads(h)
    assert not strict.valid
    assert strict.counts == {"reads": 2, "writes": 3, "stale": 1, "unpaired": 0}
    assert strict.frames["stale"]["seen"].tolist() == [0]
    assert checker.stale_reads(h, within=60.0).valid


def test_the_table_needs_a_measurement_per_row_and_flags_a_budget_exceeded():
    """Lesson 12's table: every requirement measured; a value over its budget is not within."""
    with pytest.raises(EventlabError, match="no measurement for plums"):
        freshness.table({"status": 0.1, "revenue": 0.1, "settle": 0.2})
    table = freshness.table({"status": 0.1, "revenue": 0.1, "settle": 9.0, "plums": 0})
    assert table["within"].to_dict() == {
        "status": True,
        "revenue": True,
        "settle": False,
        "plums": True,
    }
    assert table.loc["status", "budget"] == freshness.SHOP_REQUIREMENTS["status"].budget


def test_staleness_counts_only_the_events_a_projection_applies(client):
    """Status board staleness covers order events only; revenue's the payment events only."""
    log = streams.stream_key("t-staleness")
    client.delete(log)
    placed = Event(type="OrderPlaced", source="storefront", subject="o-1", data={})
    paid = Event(type="PaymentCaptured", source="billing", subject="o-1", data={"amount": 5})
    streams.publish_many(client, log, [placed, paid])
    at = pd.Timestamp("2026-01-01T00:00:00Z")
    handled = pd.DataFrame(
        {
            "id": [placed.id, paid.id],
            "emitted": [at, at],
            "handled": [at + pd.Timedelta(seconds=1), at + pd.Timedelta(seconds=3)],
        }
    )
    assert freshness.staleness(handled, client, log, STATUS_BOARD).to_dict() == {placed.id: 1.0}
    assert freshness.staleness(handled, client, log, REVENUE_PER_HOUR).to_dict() == {paid.id: 3.0}
