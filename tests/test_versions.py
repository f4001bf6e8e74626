"""Version ranges: a consumer upcasts what its range holds, dead-letters the rest; gates refuse."""

import pytest

from eventlab import schema, streams, versions
from eventlab._errors import EventlabError
from eventlab.consumer import Effects, Reliable, dead_letters_frame
from eventlab.envelope import Event
from eventlab.versions import VersionRange

V1 = {"type": "object", "required": ["amount"], "properties": {"amount": {"type": "number"}}}
V2 = {
    "type": "object",
    "required": ["cents"],
    "properties": {"cents": {"type": "integer"}, "currency": {"type": "string"}},
}
V3 = {**V2, "required": ["cents", "currency"]}


@pytest.fixture
def registry(client):
    """A registry holding TRange v1..v3 (mode NONE) and an upcaster v1 -> v2."""
    reg = schema.Registry(client)
    reg.delete("TRange")
    versions.forget(reg, "TRange")
    for body in (V1, V2, V3):
        reg.register("TRange", body, mode="NONE")
    reg.add_upcaster("TRange", 1, lambda d: {"cents": round(d["amount"] * 100)})
    return reg


def event(version, data):
    """A TRange event at ``version``."""
    return Event(type="TRange", source="t", data=data, dataschema=f"TRange/v{version}")


def test_an_empty_range_is_refused():
    """A range with low > high is bad input, with a fix."""
    with pytest.raises(EventlabError, match="low <= high"):
        VersionRange("TRange", 3, 2)


async def test_consumer_upcasts_v1_handles_v2_and_dead_letters_v3_naming_the_range(
    broker, client, registry
):
    """A Reliable consumer of v1..v2: v1 read as v2, v2 as is, v3 dead-lettered with the range."""
    stream = streams.stream_key("t-ranges")
    client.delete(stream, streams.dlq_key(stream))
    sent = [
        event(1, {"amount": 1.5}),
        event(2, {"cents": 20}),
        event(3, {"cents": 3, "currency": "EUR"}),
    ]
    streams.publish_many(client, stream, sent)
    seen = []
    runtime = Reliable(broker.url, consumer="c1")

    @runtime.subscriber(
        stream,
        group="g",
        start="0",
        validate=versions.reader(registry, VersionRange("TRange", 1, 2)),
    )
    async def handle(ev: Event, effects: Effects) -> None:  # noqa: ARG001
        seen.append((ev.dataschema, ev.data))

    async with runtime:
        assert await runtime.drain(timeout=15)
    assert seen == [("TRange/v2", {"cents": 150}), ("TRange/v2", {"cents": 20})]
    [reason] = dead_letters_frame(client, stream)["reason"]
    assert "TRange v3 is outside this consumer's range TRange v1..v2" in reason


def test_gate_refuses_a_version_outside_any_live_consumers_range(registry):
    """Emitting v3 is refused while a live consumer accepts only v1..v2; allowed once it moves."""
    versions.declare(registry, "reports", VersionRange("TRange", 1, 2))
    versions.declare(registry, "audit", VersionRange("TRange", 1, 3))
    assert versions.gate(registry, "TRange", 2) == []
    [problem] = versions.gate(registry, "TRange", 3)
    assert "live consumer reports (TRange v1..v2)" in problem
    versions.declare(registry, "reports", VersionRange("TRange", 2, 3))
    assert versions.gate(registry, "TRange", 3) == []
    assert versions.gate(registry, "TRange", 1) != []
    versions.forget(registry, "TRange")
    assert versions.live(registry, "TRange") == {}
