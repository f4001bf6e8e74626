"""eventlab.history: records, the op context manager, JSONL round trip, fault windows."""

from __future__ import annotations

import asyncio
import json
import threading

import pandas as pd
import pytest
import redis

from eventlab.history import COLUMNS, History, Record, _read_ours


def test_op_records_invoke_then_ok_with_the_final_value():
    """op() records invoke with the argument and ok with the value the block set."""
    h = History()
    with h.op("p0", "enqueue", "e1") as op:
        op.value = "e1"
    assert [(r["type"], r["value"]) for r in h.records()] == [("invoke", "e1"), ("ok", "e1")]


def test_timeout_is_info_and_other_errors_are_fail():
    """A timed-out or dropped operation is info (maybe applied); a refused one is fail."""
    h = History()
    with pytest.raises(redis.TimeoutError), h.op("p0", "enqueue", "a"):
        raise redis.TimeoutError
    with pytest.raises(redis.ConnectionError), h.op("p0", "enqueue", "b"):
        raise redis.ConnectionError
    with pytest.raises(redis.ResponseError), h.op("p0", "enqueue", "c"):
        raise redis.ResponseError("WRONGTYPE")
    with pytest.raises(asyncio.CancelledError), h.op("p0", "enqueue", "d"):
        raise asyncio.CancelledError
    types = [(r["value"], r["type"]) for r in h.records() if r["type"] != "invoke"]
    assert types == [("a", "info"), ("b", "info"), ("c", "fail"), ("d", "info")]


def test_jsonl_records_have_exactly_the_contract_keys(tmp_path):
    """Each JSONL line is {time, process, type, f, value}; time is RFC 3339 UTC."""
    h = History()
    h.invoke("p0", "enqueue", {"id": "e1", "n": 1})
    h.nemesis("partition", "start", direction="both")
    path = h.write_jsonl(tmp_path / "h.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [list(r) for r in lines] == [list(COLUMNS)] * 2
    assert lines[0]["time"].endswith("Z")
    assert lines[1] == {
        "time": lines[1]["time"],
        "process": "nemesis",
        "type": "info",
        "f": "partition",
        "value": {"phase": "start", "direction": "both"},
    }


def test_jsonl_round_trip_keeps_every_record(tmp_path):
    """read_jsonl(write_jsonl(h)) gives the same frame (times to the microsecond)."""
    h = History()
    for i in range(1000):
        h.invoke(f"p{i % 3}", "enqueue", str(i))
        h.ok(f"p{i % 3}", "enqueue", str(i))
    back = History.read_jsonl(h.write_jsonl(tmp_path / "h.jsonl"))
    a, b = h.frame(), back.frame()
    assert list(a.columns) == list(COLUMNS)
    assert (a["time"].dt.floor("us") == b["time"]).all()
    pd.testing.assert_frame_equal(a.drop(columns="time"), b.drop(columns="time"))


def test_path_history_streams_to_file_in_batches(tmp_path):
    """A history with a path writes every flush_every records and on close."""
    path = tmp_path / "live.jsonl"
    h = History(path, flush_every=10)
    for i in range(25):
        h.ok("p", "dequeue", str(i))
    assert len(path.read_text().splitlines()) == 20
    h.close()
    assert len(path.read_text().splitlines()) == 25


def test_frame_dtypes_and_empty_frame():
    """frame() has datetime64 UTC times, object values (lists kept whole), and works empty."""
    empty = History().frame()
    assert list(empty.columns) == list(COLUMNS)
    assert str(empty["time"].dtype) == "datetime64[ns, UTC]"
    h = History()
    h.ok("c", "dequeue", ["a", "b"])
    frame = h.frame()
    assert str(frame["time"].dtype) == "datetime64[ns, UTC]"
    assert frame["value"].iloc[0] == ["a", "b"]


def test_fault_windows_pair_start_and_stop_per_fault():
    """fault_windows() pairs start/stop per fault; an unfinished one ends at the last record."""
    h = History()
    h.nemesis("partition", "start")
    h.nemesis("latency", "start")
    h.nemesis("partition", "stop")
    h.ok("c", "dequeue", "x")
    h.nemesis("latency", "stop")
    h.nemesis("pause", "start")
    h.ok("c", "dequeue", "y")
    w = h.fault_windows()
    assert list(w.columns) == ["start", "end", "fault"]
    assert list(w["fault"]) == ["partition", "latency", "pause"]
    assert str(w["start"].dtype) == "datetime64[ns, UTC]"
    assert (w["end"] >= w["start"]).all()
    assert w["end"].iloc[-1] == h.frame()["time"].iloc[-1]


def test_recording_from_threads_keeps_rows_whole():
    """Concurrent recorders never interleave fields of different records."""
    h = History()

    def work(p):
        for i in range(2000):
            h.ok(p, "dequeue", f"{p}-{i}")

    threads = [threading.Thread(target=work, args=(f"c{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    frame = h.frame()
    assert len(frame) == 8000
    assert (frame["value"].str.split("-").str[0] == frame["process"]).all()


def test_read_jsonl_accepts_blank_lines_and_any_iso_offset(tmp_path):
    """Blank lines are skipped; '+00:00' and 'Z' stamps and a null value read back exactly."""
    path = tmp_path / "h.jsonl"
    path.write_text(
        '{"time": "2026-01-01T00:00:01.5Z", "process": "p", "type": "ok", "f": "enqueue", '
        '"value": "nan"}\n\n'
        '{"time": "2026-01-01T01:00:02+01:00", "process": "c", "type": "ok", "f": "dequeue", '
        '"value": null}\n'
    )
    frame = History.read_jsonl(path).frame()
    assert list(frame["time"]) == [
        pd.Timestamp("2026-01-01T00:00:01.5Z"),
        pd.Timestamp("2026-01-01T00:00:02Z"),
    ]
    assert frame["value"].tolist() == ["nan", None]  # null stays no id, never the text "nan"


def test_rows_are_named_records_and_extend_takes_tuples_or_records():
    """rows() gives Records by name; extend() takes plain tuples and another history's rows."""
    h = History()
    h.ok("c", "dequeue", ["a", "b"])
    h.extend([(5, "p", "invoke", "enqueue", "x")])
    first, second = h.rows()
    assert isinstance(first, Record)
    assert (first.process, first.type, first.f, first.value) == ("c", "ok", "dequeue", ["a", "b"])
    assert second == Record(time_ns=5, process="p", type="invoke", f="enqueue", value="x")
    merged = History()
    merged.extend(h.rows())
    assert merged.rows() == h.rows()
    assert all(isinstance(r, Record) for r in merged.rows())
    with pytest.raises(TypeError):
        h.extend([(1, "p", "ok")])  # a short tuple is refused, not padded


OURS = '{"time": "2026-01-01T00:00:01.000000Z", "process": "p", "type": "ok", "f": "enqueue", '
TRICKY = [
    "plain-id",
    "",
    "nan",
    None,
    0,
    -7,
    1.5,
    True,
    ["a", "b"],
    [],
    {"phase": "start", "value": "inner", "type": "x", "f": {"time": 1}},
    'quote " and backslash \\ and "value": inside',
    "é ☃ \u2028 tab\tnewline\nend",
    {"nested": [1, {"deep": None}]},
]


def test_read_jsonl_reads_every_value_and_name_shape_back_exactly(tmp_path):
    """Values of every JSON shape and odd process/op names read back as written (µs times)."""
    h = History()
    for i, value in enumerate(TRICKY):
        h.record(f'p"{i}" "value": ', "ok" if i % 2 else "invoke", f"f\\{i}\n☃", value)
    h.nemesis("partition", "start", direction="both")
    path = h.write_jsonl(tmp_path / "h.jsonl")
    assert _read_ours(path.read_bytes()) is not None  # read column by column, not line by line
    back = History.read_jsonl(path)
    assert [r[1:] for r in back.rows()] == [r[1:] for r in h.rows()]
    assert [r.time_ns for r in back.rows()] == [r.time_ns // 1000 * 1000 for r in h.rows()]


@pytest.mark.parametrize(
    "text",
    [
        # other key order, compact separators, no final newline: read line by line
        '{"process":"p","type":"ok","f":"enqueue","value":"a","time":"2026-01-01T00:00:01Z"}',
        # an extra key is ignored, as line by line
        OURS + '"extra": 1, "value": "a"}\n',
        # our form, written on Windows
        OURS + '"value": "a"}\r\n',
    ],
)
def test_read_jsonl_of_other_writers_gives_the_same_record(tmp_path, text):
    """JSONL not in write_jsonl's exact form still reads back the same record."""
    path = tmp_path / "h.jsonl"
    path.write_bytes(text.encode())
    assert _read_ours(path.read_bytes()) is None  # not our exact form: read line by line
    (row,) = History.read_jsonl(path).rows()
    assert row == Record(1_767_225_601_000_000_000, "p", "ok", "enqueue", "a")


@pytest.mark.parametrize(
    "text",
    [
        OURS + '"value": 12',  # no closing brace: not JSON
        OURS + '"value": 1, 2}\n',
        OURS + '"value": [1,\n' + OURS + '"value": 2}\n',  # a line cut short, then one whole
        OURS + '"value": 1}\n\x00',
        '{"time": "2026-01-01T00:00:01.000000Z", "process": "p", "type": "ok", "value": 1}\n',
    ],
)
def test_read_jsonl_refuses_a_broken_line(tmp_path, text):
    """A line that is not a JSON record (or lacks a key) raises instead of reading a guess."""
    path = tmp_path / "h.jsonl"
    path.write_bytes(text.encode())
    with pytest.raises((ValueError, KeyError)):
        History.read_jsonl(path)


def test_a_read_history_frames_counts_and_grows_like_a_recorded_one(tmp_path):
    """After read_jsonl, len, frame() (built from columns), rows() and more records agree."""
    h = History()
    for i in range(5):
        h.ok(f"p{i % 2}", "enqueue", [str(i)] if i % 2 else str(i))
    path = h.write_jsonl(tmp_path / "h.jsonl")
    a, b, c = (History.read_jsonl(path) for _ in range(3))
    assert len(a) == 5
    assert a._columns is not None  # not yet built one by one
    from_columns = a.frame()
    assert [r.value for r in b.rows()] == ["0", ["1"], "2", ["3"], "4"]
    pd.testing.assert_frame_equal(from_columns, b.frame())
    a.ok("q", "dequeue", "x")
    c.extend([(1, "q", "ok", "dequeue", "y")])
    assert len(a) == len(c) == 6
    assert [r.value for r in a.rows()][-2:] == ["4", "x"]
    assert [r.value for r in c.rows()][-2:] == ["4", "y"]
    assert list(a.frame()["value"])[:5] == list(from_columns["value"])
