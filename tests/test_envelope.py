"""eventlab.envelope: the CloudEvents envelope and its flat plain-text wire format."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from eventlab import streams
from eventlab.envelope import EnvelopeError, Event


def _event(**changes):
    base = {"type": "OrderPlaced", "source": "orders", "data": {"order_id": "o-1", "total": 500}}
    return Event(**{**base, **changes})


def test_round_trip_keeps_every_attribute():
    """to_fields then from_fields gives back an equal event, extensions included."""
    event = _event(subject="o-1", dataschema="OrderPlaced/v1", extensions={"tenant": "acme"})
    assert Event.from_fields(event.to_fields()) == event


def test_fields_are_flat_plain_text():
    """Every field is a str; data is JSON text; time is RFC 3339 UTC with Z."""
    fields = _event(time=datetime(2026, 11, 26, 9, 30, tzinfo=UTC)).to_fields()
    assert all(isinstance(v, str) for v in fields.values())
    assert fields["data"] == '{"order_id":"o-1","total":500}'
    assert fields["time"] == "2026-11-26T09:30:00.000000Z"
    assert fields["specversion"] == "1.0"
    assert "subject" not in fields  # optional attributes are omitted when unset


def test_non_utc_time_is_normalised():
    """A time in another zone is written as the same instant in UTC."""
    moment = datetime(2026, 1, 1, 10, 0, tzinfo=timezone(timedelta(hours=2)))
    fields = _event(time=moment).to_fields()
    assert fields["time"].startswith("2026-01-01T08:00:00")
    assert Event.from_fields(fields).time == moment


def test_correlation_defaults_to_own_id_and_follow_carries_it():
    """A root event correlates with itself; follow() keeps the correlation and sets causation."""
    root = _event(subject="o-1")
    assert root.correlationid == root.id
    child = root.follow(type="OrderAccepted", source="orders", data={"order_id": "o-1"})
    grandchild = child.follow(type="StockReserved", source="inventory")
    assert child.correlationid == root.id
    assert child.causationid == root.id
    assert grandchild.correlationid == root.id
    assert grandchild.causationid == child.id
    assert grandchild.subject == "o-1"
    assert len({root.id, child.id, grandchild.id}) == 3


def test_event_is_frozen_and_slotted():
    """Event is an immutable slotted record."""
    event = _event()
    with pytest.raises(dataclasses.FrozenInstanceError):
        event.type = "x"  # type: ignore[misc]
    assert not hasattr(event, "__dict__")


def test_bytes_fields_decode():
    """Fields read without decode_responses (bytes) decode the same."""
    event = _event()
    raw = {k.encode(): v.encode() for k, v in event.to_fields().items()}
    assert Event.from_fields(raw) == event


def test_every_bad_field_is_named_at_once():
    """One EnvelopeError names each missing or malformed field, and keeps the input."""
    fields = {"specversion": "0.3", "source": "orders", "time": "yesterday", "data": "{not json"}
    with pytest.raises(EnvelopeError) as info:
        Event.from_fields(fields)
    problems = info.value.problems
    assert set(problems) == {"specversion", "id", "type", "time", "data"}
    assert "not JSON" in problems["data"]
    assert info.value.fields == fields
    assert "fix:" in str(info.value)


@pytest.mark.parametrize("name", ["specversion", "id", "source", "type", "time"])
def test_each_required_attribute_absent_is_refused_not_defaulted(name):
    """A decoded entry without specversion, id, source, type or time is refused, never filled in."""
    fields = _event().to_fields()
    del fields[name]
    with pytest.raises(EnvelopeError) as info:
        Event.from_fields(fields)
    assert info.value.problems == {name: "missing"}


def test_every_required_attribute_absent_is_named_at_once():
    """Fields with only data name all five required attributes as missing, in one error."""
    with pytest.raises(EnvelopeError) as info:
        Event.from_fields({"data": "{}"})
    assert info.value.problems == dict.fromkeys(
        ("specversion", "id", "source", "type", "time"), "missing"
    )


def test_time_without_timezone_is_refused():
    """A naive timestamp is ambiguous across services and is refused."""
    fields = _event().to_fields() | {"time": "2026-11-26T09:30:00"}
    with pytest.raises(EnvelopeError, match="timezone"):
        Event.from_fields(fields)


def test_wrong_content_type_and_bad_extension_are_refused():
    """Only JSON data is accepted, and extension names follow CloudEvents rules."""
    fields = _event().to_fields() | {"datacontenttype": "text/xml", "Bad-Name": "x"}
    with pytest.raises(EnvelopeError) as info:
        Event.from_fields(fields)
    assert set(info.value.problems) == {"datacontenttype", "Bad-Name"}


def test_wrong_types_in_python_are_refused():
    """Constructing an event with a non-string type or a naive time raises EnvelopeError."""
    with pytest.raises(EnvelopeError) as info:
        Event(type=5, source="", time=datetime(2026, 1, 1))  # type: ignore[arg-type]  # noqa: DTZ001
    assert set(info.value.problems) == {"type", "source", "time"}


def test_missing_data_decodes_as_none():
    """An entry without a data field is an event whose data is None."""
    fields = _event().to_fields()
    del fields["data"]
    assert Event.from_fields(fields).data is None


def test_redis_cli_xadd_decodes_and_eventlab_reads_as_plain_fields(each_broker, each_client):
    """An event XADDed by redis-cli decodes; one published by eventlab reads as plain fields."""
    assert each_broker.server is not None
    bundled = Path(each_broker.server.path).with_name("valkey-cli")
    binary = shutil.which("redis-cli") or (str(bundled) if bundled.exists() else None)
    if binary is None:
        pytest.skip("no redis-cli on PATH")
    port = str(each_broker.port)
    subprocess.run(
        [binary, "-p", port, "XADD", "lab:{orders}", "*",
         "specversion", "1.0", "id", "e-1", "source", "orders", "type", "OrderPlaced",
         "time", "2026-11-26T09:30:00Z", "datacontenttype", "application/json",
         "subject", "o-1", "data", '{"order_id":"o-1","total":500}'],
        check=True, capture_output=True,
    )  # fmt: skip
    [(_, event)] = streams.replay(each_client, "lab:{orders}")
    assert event.id == "e-1"
    assert event.data == {"order_id": "o-1", "total": 500}
    streams.publish(each_client, "lab:{orders}", _event(id="e-2"))
    out = subprocess.run(
        [binary, "-p", port, "XRANGE", "lab:{orders}", "-", "+"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    assert "e-2" in out
    assert "OrderPlaced" in out
    assert '{"order_id":"o-1","total":500}' in out


def test_json_edge_cases_round_trip():
    """Non-ASCII text, integer keys, big integers and nested data encode like json does."""
    data = {"name": "Zoë → 東京", 7: [1, 2.5, None, True], "big": 2**70, "nested": {"a": []}}
    event = _event(data=data)
    fields = event.to_fields()
    assert "Zoë → 東京" in fields["data"]
    assert Event.from_fields(fields).data == {
        "name": "Zoë → 東京",
        "7": [1, 2.5, None, True],
        "big": 2**70,
        "nested": {"a": []},
    }


def test_data_that_is_not_json_is_refused_when_encoding():
    """Encoding data that JSON cannot hold raises TypeError instead of writing garbage."""
    with pytest.raises(TypeError):
        _event(data={"when": object()}).to_fields()


@pytest.mark.parametrize(
    "event",
    [
        Event(type="OrderPlaced", source="orders"),
        Event(type="OrderPlaced", source="orders", data={"n": 1}, subject="o-1"),
        Event(
            type="OrderPaid",
            source="billing",
            data=[1, "é"],
            subject="o-1",
            dataschema="OrderPaid/v1",
            correlationid="flow-1",
            causationid="cause-1",
        ),
        Event(type="OrderPaid", source="billing", extensions={"tenant": "acme"}),
        Event(
            type="X", source="y", time=datetime(2026, 1, 1, 12, tzinfo=timezone(timedelta(hours=2)))
        ),
    ],
)
def test_decoding_builds_the_same_event_as_the_constructor(event):
    """from_fields (the consumer's fast build included) equals the event, every slot alike."""
    back = Event.from_fields(event.to_fields())
    assert back == event.evolve(time=event.time.astimezone(UTC))
    assert [getattr(back, f.name) for f in dataclasses.fields(Event)] == [
        getattr(event, f.name) if f.name != "time" else event.time.astimezone(UTC)
        for f in dataclasses.fields(Event)
    ]
    assert type(back) is Event
    with pytest.raises(dataclasses.FrozenInstanceError):
        back.id = "other"  # type: ignore[misc]
