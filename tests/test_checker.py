"""eventlab.checker: each verdict on small hand-built histories with known answers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd

from eventlab import checker, streams
from eventlab.envelope import Event
from eventlab.history import History


def _queue_history():
    h = History()
    for i in range(6):
        h.invoke("p", "enqueue", f"e{i}")
    for i in (0, 1, 2, 3):
        h.ok("p", "enqueue", f"e{i}")
    h.info("p", "enqueue", "e4")  # timed out
    h.fail("p", "enqueue", "e5")  # refused
    h.ok("c", "dequeue", "e0")
    h.ok("c", "dequeue", ["e1", "e1"])  # a batch with a duplicate
    h.ok("c", "dequeue", "e4")  # the timed-out one arrived after all
    h.ok("c", "dequeue", "e5")  # refused, yet delivered: unexpected
    h.ok("c", "dequeue", "zz")  # never enqueued
    return h


def test_total_queue_names_lost_duplicated_unexpected_recovered():
    """total-queue: e2/e3 lost, e1 duplicated, e5 and zz unexpected, e4 recovered."""
    v = checker.total_queue(_queue_history())
    assert not v.valid
    assert v.offending["lost"] == ["e2", "e3"]
    assert v.offending["duplicated"] == ["e1"]
    assert v.offending["unexpected"] == ["e5", "zz"]
    assert v.offending["recovered"] == ["e4"]
    assert v.counts["lost"] == 2
    assert set(v.frames["outcomes"]["outcome"]) >= {"lost", "duplicated"}
    assert "INVALID" in str(v)


def test_total_queue_valid_when_everything_arrives_duplicates_allowed_or_not():
    """Duplicates keep total-queue valid under at-least-once unless allow_duplicates=False."""
    h = History()
    for i in range(3):
        with h.op("p", "enqueue", f"e{i}"):
            pass
        h.ok("c", "dequeue", f"e{i}")
    h.ok("c", "dequeue", "e0")
    assert checker.total_queue(h).valid
    assert not checker.total_queue(h, allow_duplicates=False).valid
    assert checker.total_queue(h.frame()).valid  # a frame works as well as a History


def test_exactly_once_finds_missing_and_doubled_effects():
    """exactly-once: one effect per acknowledged event; missing and doubled are named."""
    h = History()
    for i in range(4):
        h.ok("p", "enqueue", f"e{i}")
    v = checker.exactly_once(h, effects=["e0", "e1", "e1", "e3", "x"])
    assert not v.valid
    assert v.offending == {"missing": ["e2"], "duplicated": ["e1"], "unexpected": ["x"]}
    assert v.counts["once"] == 2
    ok = checker.exactly_once(h, effects=["e0", "e1", "e2", "e3"])
    assert ok.valid
    h.ok("c", "effect", "e0")
    assert checker.exactly_once(h).counts["missing"] == 3  # effects read from the history


def test_exactly_once_counts_an_effect_of_a_certainly_failed_enqueue_as_unexpected():
    """exactly-once: an effect of a certainly failed enqueue is unexpected, as in total-queue."""
    v = checker.exactly_once(_queue_history(), effects=["e0", "e1", "e2", "e3", "e4", "e5"])
    assert v.offending["unexpected"] == ["e5"]  # e5's enqueue failed: its effect is impossible
    assert v.offending["missing"] == []
    assert not v.valid
    assert checker.total_queue(_queue_history()).offending["unexpected"] == ["e5", "zz"]
    # e4 timed out (info): maybe applied, so its effect is allowed
    ok = checker.exactly_once(_queue_history(), effects=["e0", "e1", "e2", "e3", "e4"])
    assert ok.valid


def test_one_terminal_state_per_aggregate():
    """One terminal state: none and many are both offences; expected aggregates count."""
    t = pd.DataFrame(
        {
            "aggregate": ["o1", "o1", "o2", "o2", "o2", "o3"],
            "state": ["Placed", "Completed", "Placed", "Completed", "Cancelled", "Placed"],
        }
    )
    v = checker.one_terminal_state(
        t, terminal={"Completed", "Cancelled"}, aggregates=["o1", "o2", "o3", "o4"]
    )
    assert not v.valid
    assert v.offending == {"none": ["o3", "o4"], "many": ["o2"]}
    assert v.counts == {"aggregates": 4, "one": 1, "none": 2, "many": 1}
    fine = t[t["aggregate"] == "o1"]
    assert checker.one_terminal_state(fine, terminal={"Completed"}).valid


def test_monotonic_versions_flags_a_regression_per_aggregate():
    """A version that goes back for one aggregate is a regression; other keys interleave freely."""
    obs = pd.DataFrame({"aggregate": ["a", "b", "a", "b", "a"], "version": [1, 5, 2, 6, 1]})
    v = checker.monotonic_versions(obs)
    assert not v.valid
    assert v.offending["regressed"] == ["a"]
    row = v.frames["regressions"].iloc[0]
    assert (row["before"], row["after"]) == (2, 1)
    assert checker.monotonic_versions(obs.iloc[:4]).valid


def test_convergence_reports_seconds_from_heal_until_agreement_for_good():
    """Convergence time = heal → first sample after which nobody disagrees; valid within T."""
    heal = datetime(2026, 1, 1, tzinfo=UTC)
    times = [heal + timedelta(seconds=s) for s in (-1, 0, 0.5, 1.0, 1.5, 2.0)]
    samples = pd.DataFrame(
        {"time": pd.to_datetime(times, utc=True), "disagreeing": [3, 3, 0, 2, 0, 0]}
    )
    v = checker.convergence(samples, heal=heal, within=2.0)
    assert v.valid
    assert v.convergence_seconds == 1.5
    assert list(v.frames["convergence"].columns) == ["time", "disagreeing"]
    assert not checker.convergence(samples, heal=heal, within=1.0).valid
    never = samples.assign(disagreeing=[1, 1, 1, 1, 1, 1])
    assert checker.convergence(never, heal=heal, within=9).convergence_seconds is None


def test_watch_convergence_polls_a_real_projection_against_the_log(client):
    """A projection that catches up with the fold of XRANGE converges; the time is measured."""
    stream = streams.stream_key("conv")
    for i in range(5):
        streams.publish(client, stream, Event(type="Inc", source="t", subject=f"k{i % 2}", data=1))

    def apply(state, fields):
        state[fields["subject"]] = state.get(fields["subject"], 0) + 1

    projection: dict[str, int] = {}
    polls = {"n": 0}

    def read():
        polls["n"] += 1
        if polls["n"] >= 3:  # the projection catches up on the third look
            projection.update(checker.fold_stream(client, stream, apply))
        return projection

    v = checker.watch_convergence(
        read, lambda: checker.fold_stream(client, stream, apply), within=2.0, interval=0.01
    )
    assert v.valid
    assert v.convergence_seconds is not None
    assert v.convergence_seconds < 2.0
    assert v.frames["convergence"]["disagreeing"].iloc[0] == 2
    stuck = checker.watch_convergence(dict, lambda: {"k": 1}, within=0.05, interval=0.01)
    assert not stuck.valid
    assert stuck.offending["disagreeing"] == ["k"]


def test_lost_by_retention_separates_trimmed_from_lost(client):
    """Trimmed but delivered is fine; trimmed and never delivered is lost to retention."""
    stream = streams.stream_key("ret")
    h = History()
    events = [Event(type="T", source="t") for _ in range(10)]
    for e in events:
        with h.op("p", "enqueue", e.id):
            streams.publish(client, stream, e, maxlen=4, approximate=False)
    h.ok("c", "dequeue", [e.id for e in events[:3]])
    v = checker.lost_by_retention(h, present=checker.stream_event_ids(client, stream))
    assert not v.valid
    assert v.counts == {"acknowledged": 10, "trimmed": 6, "lost": 3}
    assert v.offending["lost"] == sorted(e.id for e in events[3:6])
