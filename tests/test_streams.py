"""eventlab.streams: publish, replay, explicit groups, pending and lag on a real server."""

from __future__ import annotations

import pytest

from eventlab import streams
from eventlab._errors import EventlabError
from eventlab.envelope import EnvelopeError, Event

S = "{lab:orders}"


def _events(n: int, *, subject: str = "o-1") -> list[Event]:
    return [
        Event(type="OrderPlaced", source="orders", subject=subject, data={"n": i}) for i in range(n)
    ]


def test_stream_key_is_namespaced_with_a_hash_tag(monkeypatch):
    """stream_key puts namespace and name in one cluster hash tag; derived keys share it."""
    assert streams.stream_key("orders") == "{lab:orders}"
    monkeypatch.setenv("EVENTLAB_NAMESPACE", "alice")
    assert streams.stream_key("orders") == "{alice:orders}"
    assert streams.dlq_key("{alice:orders}") == "{alice:orders}:dlq"
    assert streams.key_patterns() == ("{alice:*", "alice:*")


def test_bad_namespace_is_one_line_with_a_fix(monkeypatch):
    """A namespace with spaces or colons is refused with a fix."""
    monkeypatch.setenv("EVENTLAB_NAMESPACE", "a b:c")
    with pytest.raises(EventlabError, match="fix:"):
        streams.namespace()


def test_publish_and_replay_in_order(store_client):
    """Events published one by one and in a batch replay in publish order with their ids."""
    first = streams.publish(store_client, S, _events(1)[0])
    batch = _events(1200)
    ids = streams.publish_many(store_client, S, batch, chunk=500)
    assert len(ids) == 1200
    replayed = streams.replay(store_client, S)
    assert [entry_id for entry_id, _ in replayed] == [first, *ids]
    assert [event for _, event in replayed[1:]] == batch


def test_every_publish_path_writes_exactly_to_fields(store_client):
    """Sync publish and publish_many write the entry to_fields() describes, extensions too."""
    event = Event(
        type="OrderPaid",
        source="billing",
        data={"total": 5},
        subject="o-9",
        dataschema="OrderPaid/v1",
        causationid="c-1",
        extensions={"tenant": "acme", "source": "ignored-by-replace"},
    )
    plain = Event(type="OrderPlaced", source="orders")
    ids = [
        streams.publish(store_client, S, event),
        *streams.publish_many(store_client, S, [event, plain]),
    ]
    stored = {str(i): dict(f) for i, f in store_client.xrange(S)}
    want = [event.to_fields(), event.to_fields(), plain.to_fields()]
    assert [stored[i] for i in ids] == want
    assert want[0]["source"] == "ignored-by-replace"  # as to_fields always did: update()


async def test_async_publish_paths_write_exactly_to_fields(broker):
    """The asyncio apublish and apublish_many write the same fields as to_fields()."""
    aclient = broker.async_client()
    await aclient.flushall()
    try:
        event = Event(type="OrderPaid", source="billing", data=[1], extensions={"tenant": "a"})
        ids = [await streams.apublish(aclient, S, event)]
        ids += await streams.apublish_many(aclient, S, [event], maxlen=10, approximate=False)
        stored = {str(i): dict(f) for i, f in await aclient.xrange(S)}
        assert [stored[i] for i in ids] == [event.to_fields()] * 2
    finally:
        await aclient.aclose()


def test_replay_range(store_client):
    """Replay with start/end returns only that slice (inclusive)."""
    ids = streams.publish_many(store_client, S, _events(10))
    part = streams.replay(store_client, S, start=ids[3], end=ids[5])
    assert [entry_id for entry_id, _ in part] == ids[3:6]


def test_maxlen_bounds_the_stream(store_client):
    """MAXLEN ~ keeps the stream near the bound (never below it)."""
    streams.publish_many(store_client, S, _events(1000), maxlen=100)
    length = store_client.xlen(S)
    assert 100 <= length < 300


def test_exact_maxlen(store_client):
    """approximate=False trims exactly."""
    for event in _events(20):
        streams.publish(store_client, S, event, maxlen=5, approximate=False)
    assert store_client.xlen(S) == 5


def test_group_at_dollar_skips_history_and_at_zero_does_not(store_client):
    """A group created at $ after events were produced skips them; at 0 it reads them all."""
    streams.publish_many(store_client, S, _events(5))
    assert streams.create_group(store_client, S, "late", start="$")
    assert streams.create_group(store_client, S, "replay", start="0")
    late = store_client.xreadgroup("late", "c1", {S: ">"}, count=100)
    replay = store_client.xreadgroup("replay", "c1", {S: ">"}, count=100)
    assert late == []
    assert len(replay[0][1]) == 5


def test_group_start_must_be_explicit(store_client):
    """create_group refuses a start other than 0, $ or an id; creating twice is a no-op."""
    with pytest.raises(ValueError, match="only new events"):
        streams.create_group(store_client, S, "g", start="latest")
    assert streams.create_group(store_client, S, "g", start="0")
    assert not streams.create_group(store_client, S, "g", start="0")


def test_pending_and_lag_per_group(store_client):
    """After reading 3 of 10 without ack: pending 3, lag 7; after ack, pending 0."""
    streams.publish_many(store_client, S, _events(10))
    streams.create_group(store_client, S, "billing", start="0")
    streams.create_group(store_client, S, "inventory", start="0")
    read = store_client.xreadgroup("billing", "b1", {S: ">"}, count=3)
    summary = streams.pending_summary(store_client, S, "billing")
    assert summary.count == 3
    assert summary.consumers == {"b1": 3}
    frame = streams.groups_frame(store_client).set_index("group")
    assert list(frame.columns) == [c for c in streams.GROUP_COLUMNS if c != "group"]
    assert frame.loc["billing", "pending"] == 3
    assert frame.loc["billing", "lag"] == 7
    assert frame.loc["inventory", "lag"] == 10
    assert frame.loc["billing", "length"] == 10
    store_client.xack(S, "billing", *[entry_id for entry_id, _ in read[0][1]])
    assert streams.pending_summary(store_client, S, "billing").count == 0


def test_groups_frame_ignores_dead_letter_streams(client):
    """Dead-letter streams are not listed as work streams."""
    streams.publish_many(client, S, _events(1))
    streams.publish_many(client, streams.dlq_key(S), _events(1))
    streams.create_group(client, S, "g", start="0")
    assert streams.groups_frame(client)["stream"].tolist() == [S]


async def test_async_publish_and_group(each_store):
    """The asyncio flavours publish in order and create groups like the sync ones."""
    aclient = each_store.async_client()
    await aclient.flushall()
    first = await streams.apublish(aclient, S, _events(1)[0])
    ids = await streams.apublish_many(aclient, S, _events(50), maxlen=1000)
    assert await streams.acreate_group(aclient, S, "g", start="0")
    assert not await streams.acreate_group(aclient, S, "g", start="0")
    entries = await aclient.xrange(S)
    assert [e[0] for e in entries] == [first, *ids]
    await aclient.aclose()


def test_bad_maxlen_and_chunk_are_refused(client):
    """Non-positive bounds are errors, not silent no-ops."""
    with pytest.raises(ValueError, match="maxlen"):
        streams.publish(client, S, _events(1)[0], maxlen=0)
    with pytest.raises(ValueError, match="chunk"):
        streams.publish_many(client, S, _events(1), chunk=0)


def test_replay_of_a_bad_entry_names_it(client):
    """A malformed entry in the log raises EnvelopeError during replay instead of vanishing."""
    client.xadd(S, {"id": "x"})
    with pytest.raises(EnvelopeError, match="invalid event"):
        streams.replay(client, S)
