"""eventlab.freshness: reads of a real view and the log's writes, judged by stale_reads."""

from __future__ import annotations

import asyncio

from eventlab import checker, freshness, streams
from eventlab.envelope import Event
from eventlab.history import History


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
