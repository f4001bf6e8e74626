"""eventlab.history: records, the op context manager, JSONL round trip, fault windows."""

from __future__ import annotations

import asyncio
import json
import threading

import pandas as pd
import pytest
import redis

from eventlab.history import COLUMNS, History


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
