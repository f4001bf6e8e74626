"""eventlab.streams: publish, replay, explicit groups, pending and lag on a real server."""

from __future__ import annotations

import pytest
import redis

from eventlab import streams
from eventlab._errors import EventlabError
from eventlab.envelope import EnvelopeError, Event, _flat_fields

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


def _varied() -> list[Event]:
    """Events covering every shape the publish request builder meets."""
    return [
        *_events(3),
        Event(type="OrderPlaced", source="orders"),
        Event(
            type="OrderPaid",
            source="billing",
            subject="o-9",
            dataschema="OrderPaid/v1",
            correlationid="k-1",
            causationid="c-1",
            data={"total": 5, "note": "crème brûlée ✓"},  # not ASCII: byte lengths differ
        ),
        Event(type="OrderPlaced", source="orders", subject="ordre-é", data=[1, None, 2.5]),
        Event(type="OrderPaid", source="billing", data={}, extensions={"tenant": "acme"}),
        Event(type="OrderPlaced", source="orders", subject="o-2", data={"n": 10**30}),
    ]


def _pipelined(client, stream, events, **options):
    """What publish_many sent before it built its own request: a redis-py pipeline."""
    head = streams._xadd_head(stream, options.get("maxlen"), approximate=options["approximate"])
    pipe = client.pipeline(transaction=False)
    for event in events:
        pipe.execute_command(*_flat_fields(event, *head))
    return [str(i) for i in pipe.execute()]


@pytest.mark.parametrize("maxlen", [None, 50])
def test_publish_request_is_the_bytes_redis_py_packs(client, maxlen):
    """publish_many's one-request chunk is byte for byte redis-py's pipeline of the same XADDs."""
    batch = _varied()
    head = streams._xadd_head(S, maxlen, approximate=maxlen is not None)
    conn = client.connection_pool.get_connection()
    try:
        want = b"".join(conn.pack_commands([_flat_fields(e, *head) for e in batch]))
    finally:
        client.connection_pool.release(conn)
    assert streams._request(head, streams._resp_head(head), batch) == want
    ascii_only = batch[:4]  # the common case: the whole chunk encoded at once
    assert streams._request(head, streams._resp_head(head), ascii_only) == b"".join(
        streams._packed(_flat_fields(e, *head)) for e in ascii_only
    )


def test_publish_many_reads_back_as_the_pipeline_wrote(each_store):
    """Entries publish_many writes read back byte-identical, in order, to the pipeline's."""
    raw = each_store.client(decode_responses=False)
    text = each_store.client()
    try:
        raw.flushall()
        batch = _varied() * 3
        new_ids = streams.publish_many(text, S, batch, chunk=5, maxlen=1000)
        old_ids = _pipelined(text, S + ":old", batch, maxlen=1000, approximate=True)
        new, old = raw.xrange(S), raw.xrange(S + ":old")
        assert [i.decode() for i, _ in new] == new_ids
        assert [i.decode() for i, _ in old] == old_ids
        assert [fields for _, fields in new] == [fields for _, fields in old]
        assert [list(fields) for _, fields in new] == [list(fields) for _, fields in old]  # order
    finally:
        raw.close()
        text.close()


def _refuse_xadd(client, kind):
    """Make every XADD to S an error reply: a string key, or a stream whose ids ran out."""
    if kind == "wrongtype":
        client.set(S, "not a stream")
        return "WRONGTYPE"
    streams.publish(client, S, _events(1)[0])
    client.execute_command("XSETID", S, f"{2**64 - 1}-{2**64 - 1}")
    return "exhausted the last possible ID"


@pytest.mark.parametrize("kind", ["wrongtype", "exhausted"])
def test_an_xadd_error_reply_raises_as_before_and_leaves_the_connection_clean(store_client, kind):
    """A refused XADD raises the pipeline's exact error; every reply is read, the pool works on."""
    words, batch = _refuse_xadd(store_client, kind), _events(7)
    with pytest.raises(redis.ResponseError) as old:
        _pipelined(store_client, S, batch[:3], approximate=True)
    with pytest.raises(redis.ResponseError) as new:
        streams.publish_many(store_client, S, batch, chunk=3)
    assert type(new.value) is type(old.value)
    assert str(new.value) == str(old.value)
    assert words in str(new.value)
    assert str(new.value).startswith("Command # 1 (XADD {lab:orders} * specversion 1.0 id ")
    assert store_client.ping()
    assert store_client.type(S) == ("string" if kind == "wrongtype" else "stream")
    ids = streams.publish_many(store_client, S + ":next", _events(4), chunk=3)
    assert [i for i, _ in store_client.xrange(S + ":next")] == ids


async def test_async_xadd_error_reply_raises_as_before(each_store):
    """apublish_many raises the asyncio pipeline's exact error and the client works after it."""
    aclient = each_store.async_client()
    try:
        await aclient.flushall()
        await aclient.execute_command("SET", S, "not a stream")
        head = streams._xadd_head(S, None, approximate=True)
        pipe, batch = aclient.pipeline(transaction=False), _events(5)
        for event in batch[:2]:
            pipe.execute_command(*_flat_fields(event, *head))
        with pytest.raises(redis.ResponseError) as old:
            await pipe.execute()
        with pytest.raises(redis.ResponseError) as new:
            await streams.apublish_many(aclient, S, batch, chunk=2)
        assert str(new.value) == str(old.value)
        assert await aclient.ping()
        ids = await streams.apublish_many(aclient, S + ":next", _varied(), chunk=3)
        assert [i for i, _ in await aclient.xrange(S + ":next")] == ids
    finally:
        await aclient.aclose()


def test_publish_many_reconnects_after_the_server_drops_its_connection(broker, client):
    """A pooled connection the server closed is replaced at checkout: every event lands once."""
    streams.publish_many(client, S, _events(3))  # a connection waits in the pool
    other = broker.client()
    try:
        assert other.client_kill_filter(_type="normal", skipme=True) >= 1
    finally:
        other.close()
    ids = streams.publish_many(client, S, _events(250), chunk=100)
    assert len(set(ids)) == 250
    assert client.xlen(S) == 253
