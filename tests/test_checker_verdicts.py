"""eventlab.checker corners: evidence after heal, one id rule, stale reads, first-offence messages.

Each test is an anomaly and its clean twin, hand-made (or, for stale reads, read
from a real server), so a checker that flags nothing or everything fails here.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from eventlab import checker, streams
from eventlab.envelope import Event
from eventlab.history import History

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _ns(seconds: float) -> int:
    return int((T0 + timedelta(seconds=seconds)).timestamp() * 1e9)


# -- 1. convergence rests on evidence after the heal, on non-empty views ---------------


def test_convergence_without_a_sample_after_heal_is_invalid_and_says_why():
    """Samples only before heal (the last agreeing) give INVALID, not 'converged in 0 s'."""
    heal = T0 + timedelta(seconds=10)
    before = pd.DataFrame(
        {
            "time": pd.to_datetime([T0, T0 + timedelta(seconds=1)], utc=True),
            "disagreeing": [2, 0],
        }
    )
    v = checker.convergence(before, heal=heal, within=1.0)
    assert not v.valid
    assert v.convergence_seconds is None
    assert "no sample at or after the heal" in v.detail
    assert "INVALID" in str(v)
    # the clean twin: one agreeing sample after the heal is evidence
    after = pd.concat(
        [
            before,
            pd.DataFrame(
                {"time": [pd.Timestamp(heal) + pd.Timedelta(0.5, "s")], "disagreeing": [0]}
            ),
        ],
        ignore_index=True,
    )
    ok = checker.convergence(after, heal=heal, within=1.0)
    assert ok.valid
    assert ok.convergence_seconds == 0.0


def test_convergence_of_two_empty_views_is_invalid():
    """Two empty views (the truth reads the wrong key) agree about nothing: INVALID with reason."""
    v = checker.watch_convergence(dict, dict, within=0.1, interval=0.01)
    assert not v.valid
    assert "both views are empty" in v.detail
    assert v.frames["convergence"]["compared"].iloc[-1] == 0
    ok = checker.watch_convergence(lambda: {"k": 1}, lambda: {"k": 1}, within=0.1)
    assert ok.valid
    assert ok.detail == ""


# -- 2-4. one id rule for every checker ------------------------------------------------


def test_id_of_is_the_one_rule():
    """1, 1.0, np.int64(1) and '1' are one id; None and NaN are no id, never 'nan'."""
    assert {checker.id_of(v) for v in (1, 1.0, np.int64(1), "1", b"1")} == {"1"}
    assert checker.id_of(None) is None
    assert checker.id_of(float("nan")) is None
    assert checker.id_of(pd.NA) is None
    assert checker.id_of("nan") == "nan"
    assert checker.id_of(1.5) == "1.5"


def test_one_terminal_state_reads_integer_aggregates_like_its_column():
    """An int aggregate column with aggregates=[1, 2] is VALID: argument read like the column."""
    t = pd.DataFrame({"aggregate": [1, 1, 2, 2], "state": ["Placed", "Done", "Placed", "Done"]})
    v = checker.one_terminal_state(t, terminal={"Done"}, aggregates=[1, 2])
    assert v.valid, str(v)
    assert v.counts == {"aggregates": 2, "one": 2, "none": 0, "many": 0}
    missing = checker.one_terminal_state(t, terminal={"Done"}, aggregates=[1, 2, 3])
    assert missing.offending["none"] == ["3"]


def test_a_dequeue_with_no_id_never_matches_an_event_called_nan():
    """An event whose id is the text 'nan' is lost when the only dequeue carries no id."""
    h = History()
    with h.op("p", "enqueue", "nan"):
        pass
    h.ok("c", "dequeue", None)
    v = checker.total_queue(h)
    assert not v.valid
    assert v.offending["lost"] == ["nan"]
    assert v.counts["delivered"] == 0
    assert checker.lost_by_retention(h, present=[]).offending["lost"] == ["nan"]
    h.ok("c", "dequeue", "nan")  # the clean twin: it does arrive
    assert checker.total_queue(h).valid


def test_monotonic_versions_sees_int_and_str_ids_as_one_aggregate():
    """Aggregate 1 then '1' going from version 2 to 1 is a regression of one aggregate."""
    obs = pd.DataFrame({"aggregate": pd.Series([1, "1"], dtype=object), "version": [2, 1]})
    v = checker.monotonic_versions(obs)
    assert not v.valid
    assert v.counts["aggregates"] == 1
    assert v.offending["regressed"] == ["1"]
    assert checker.monotonic_versions(obs.assign(version=[1, 2])).valid


def test_every_checker_matches_mixed_id_types():
    """Enqueued as int 7, dequeued/applied/present as '7': one event for every checker."""
    h = History()
    with h.op("p", "enqueue", 7):
        pass
    h.ok("c", "dequeue", ["7"])
    assert checker.total_queue(h).valid
    assert checker.exactly_once(h, effects=["7"]).valid
    assert checker.lost_by_retention(h, present=[7.0]).counts["trimmed"] == 0


# -- 5. stale reads --------------------------------------------------------------------


def _register(read_seen: int, *, read_starts: float, write_acked: float = 1.0) -> History:
    h = History()
    h.record("w", "invoke", "write", {"key": "x", "version": 1}, time_ns=_ns(0.5))
    h.record("w", "ok", "write", {"key": "x", "version": 1}, time_ns=_ns(write_acked))
    h.record("r", "invoke", "read", {"key": "x"}, time_ns=_ns(read_starts))
    h.record("r", "ok", "read", {"key": "x", "version": read_seen}, time_ns=_ns(read_starts + 0.1))
    return h


def test_stale_read_flags_a_read_that_missed_an_acknowledged_write():
    """A read that began after version 1 was acknowledged yet saw nothing is stale."""
    v = checker.stale_reads(_register(0, read_starts=3.0))
    assert not v.valid
    assert v.counts == {"reads": 1, "writes": 1, "stale": 1, "unpaired": 0}
    row = v.frames["stale"].iloc[0]
    assert (row["key"], row["seen"], row["missed"]) == ("x", 0, 1)
    assert row["stale_for_s"] == 2.0
    assert "by r" in v.detail
    assert "2.000 s before the read began" in v.detail
    # twins: it saw the write; or it began before the write was acknowledged (concurrent)
    assert checker.stale_reads(_register(1, read_starts=3.0)).valid
    assert checker.stale_reads(_register(0, read_starts=0.8)).valid
    # bounded staleness: 2 s behind is within a 5 s promise, not within 1 s
    assert checker.stale_reads(_register(0, read_starts=3.0), within=5.0).valid
    assert not checker.stale_reads(_register(0, read_starts=3.0), within=1.0).valid


def test_stale_read_ignores_timed_out_writes_and_reads_without_invoke():
    """A write that timed out may be invisible; a read with no invoke has no start to judge."""
    h = History()
    h.record("w", "invoke", "write", {"key": "x", "version": 1}, time_ns=_ns(0))
    h.record("w", "info", "write", {"key": "x", "version": 1}, time_ns=_ns(1))
    h.record("r", "invoke", "read", {"key": "x"}, time_ns=_ns(2))
    h.record("r", "ok", "read", {"key": "x", "version": None}, time_ns=_ns(2.1))
    h.record("r2", "ok", "read", {"key": "x", "version": 0}, time_ns=_ns(3))
    v = checker.stale_reads(h)
    assert v.valid
    assert v.counts == {"reads": 1, "writes": 0, "stale": 0, "unpaired": 1}


def test_stale_read_on_a_real_server_projection_that_lags(client):
    """Real broker: reads of a projection updated after the XADD is acknowledged are stale."""
    stream, view = streams.stream_key("stale"), streams.stream_key("stale-view")
    h = History()
    for version in (1, 2, 3):
        event = Event(type="Set", source="t", subject="x", data={"version": version})
        with h.op("writer", "write", {"key": "x", "version": version}):
            streams.publish(client, stream, event)
        with h.op("reader", "read", {"key": "x"}) as op:  # the projector has not run yet
            op.value = {"key": "x", "version": int(client.hget(view, "x") or 0)}
        client.hset(view, "x", version)  # the projector catches up, late
    with h.op("reader", "read", {"key": "x"}) as op:
        op.value = {"key": "x", "version": int(client.hget(view, "x") or 0)}
    v = checker.stale_reads(h)
    assert not v.valid
    assert v.counts["stale"] == 3
    assert list(v.frames["stale"]["seen"]) == [0, 1, 2]
    assert checker.stale_reads(h, within=3600).valid  # eventually: within an hour, fresh


# -- 8. messages -----------------------------------------------------------------------


def test_each_invalid_verdict_names_the_first_offending_operation():
    """INVALID verdicts name the first offence with its time and process, not only ids."""
    h = History()
    h.record("producer-1", "invoke", "enqueue", "e1", time_ns=_ns(1))
    h.record("producer-1", "ok", "enqueue", "e1", time_ns=_ns(2))
    h.record("producer-2", "invoke", "enqueue", "e2", time_ns=_ns(3))
    h.record("producer-2", "ok", "enqueue", "e2", time_ns=_ns(4))
    h.record("consumer-9", "ok", "dequeue", "zz", time_ns=_ns(5))
    tq = checker.total_queue(h)
    # e1 (lost, acknowledged at 2 s) comes before e2 (4 s) and zz (5 s)
    assert "lost 'e1': enqueue ok at 2026-01-01T00:00:02+00:00 by producer-1" in tq.detail
    assert tq.detail in str(tq)
    assert "trimmed before delivery 'e1'" in checker.lost_by_retention(h, present=[]).detail
    eo = checker.exactly_once(h)
    assert "missing effect of 'e1'" in eo.detail
    assert "by producer-1" in eo.detail
    t = pd.DataFrame(
        {
            "time": pd.to_datetime([T0, T0 + timedelta(seconds=1), T0 + timedelta(seconds=2)]),
            "process": ["orders", "orders", "billing"],
            "aggregate": ["o1", "o1", "o1"],
            "state": ["Placed", "Done", "Cancelled"],
        }
    )
    ots = checker.one_terminal_state(t, terminal={"Done", "Cancelled"})
    assert "second terminal state Cancelled of 'o1'" in ots.detail
    assert "by billing" in ots.detail
    mv = checker.monotonic_versions(t.assign(version=[1, 3, 2]).drop(columns="state"))
    assert "'o1' went back from version 3 to 2 at 2026-01-01T00:00:02+00:00 by billing" in mv.detail
    h.ok("consumer-9", "dequeue", ["e1", "e2"])
    clean = checker.total_queue(h.frame().drop(index=4))  # the twin: no stray zz
    assert clean.valid
    assert clean.detail == ""


def test_ids_differing_only_by_unicode_normalisation_print_distinguishably():
    """'café' (NFC) and 'café' (NFD) are two ids, and a message shows which one it means."""
    composed = unicodedata.normalize("NFC", "café")
    decomposed = unicodedata.normalize("NFD", "café")
    h = History()
    for ident in (composed, decomposed):
        with h.op("p", "enqueue", ident):
            pass
    h.ok("c", "dequeue", composed)
    v = checker.total_queue(h)
    assert v.offending["lost"] == [decomposed]  # not merged with the composed one
    assert "'cafe\\u0301'" in v.detail
    h2 = History()
    with h2.op("p", "enqueue", composed):
        pass
    assert "'café'" in checker.total_queue(h2).detail
