"""eventlab.checker: each verdict on a history whose ONLY fault is the one it must catch.

The histories in test_checker.py carry several anomalies at once, so a checker
that ignored one kind (loss, duplicates) still came out invalid for another
reason. Here every faulty history differs from a clean twin by exactly one
fault, and the clean twin must be valid: the fault alone flips the verdict.
"""

from __future__ import annotations

import pytest

from eventlab import checker
from eventlab.history import History

IDS = ["e0", "e1", "e2", "e3"]


def _enqueued(ids=IDS):
    h = History()
    for event_id in ids:
        with h.op("p", "enqueue", event_id):
            pass
    return h


def _queue(delivered):
    h = _enqueued()
    for event_id in delivered:
        h.ok("c", "dequeue", event_id)
    return h


def test_total_queue_clean_twin_is_valid():
    """Every acknowledged enqueue dequeued once: total-queue is valid and names nothing."""
    v = checker.total_queue(_queue(IDS), allow_duplicates=False)
    assert v.valid
    assert v.offending == {"lost": [], "duplicated": [], "unexpected": [], "recovered": []}


def test_total_queue_a_lost_event_alone_is_invalid():
    """One acknowledged event never dequeued, nothing else wrong: total-queue is invalid."""
    v = checker.total_queue(_queue(["e0", "e1", "e3"]))
    assert not v.valid
    assert v.offending == {"lost": ["e2"], "duplicated": [], "unexpected": [], "recovered": []}
    assert v.counts["lost"] == 1


def test_total_queue_an_unexpected_event_alone_is_invalid():
    """One dequeued event nobody enqueued, nothing else wrong: total-queue is invalid."""
    v = checker.total_queue(_queue([*IDS, "zz"]))
    assert not v.valid
    assert v.offending["unexpected"] == ["zz"]
    assert v.offending["lost"] == v.offending["duplicated"] == []


def test_total_queue_a_duplicate_alone_is_invalid_only_when_duplicates_are_refused():
    """One event dequeued twice: valid under at-least-once, invalid with allow_duplicates=False."""
    h = _queue([*IDS, "e1"])
    assert checker.total_queue(h).valid
    v = checker.total_queue(h, allow_duplicates=False)
    assert not v.valid
    assert v.offending == {"lost": [], "duplicated": ["e1"], "unexpected": [], "recovered": []}


def test_exactly_once_clean_twin_is_valid():
    """One effect per acknowledged event: exactly-once is valid and names nothing."""
    v = checker.exactly_once(_enqueued(), effects=IDS)
    assert v.valid
    assert v.offending == {"missing": [], "duplicated": [], "unexpected": []}
    assert v.counts["once"] == len(IDS)


@pytest.mark.parametrize(
    ("effects", "kind", "offender"),
    [
        ([*IDS, "e2"], "duplicated", "e2"),
        (["e0", "e1", "e3"], "missing", "e2"),
        ([*IDS, "zz"], "unexpected", "zz"),
    ],
    ids=["duplicated-effect", "missing-effect", "unexpected-effect"],
)
def test_exactly_once_a_single_fault_alone_is_invalid(effects, kind, offender):
    """One doubled, missing or unexpected effect and nothing else wrong: exactly-once is invalid."""
    v = checker.exactly_once(_enqueued(), effects=effects)
    assert not v.valid
    assert v.offending == {
        name: [offender] if name == kind else [] for name in ("missing", "duplicated", "unexpected")
    }


def test_exactly_once_a_duplicated_effect_in_the_history_alone_is_invalid():
    """Effects read from the history: one event's effect recorded twice makes it invalid."""
    h = _enqueued()
    for event_id in [*IDS, "e0"]:
        h.ok("c", "effect", event_id)
    v = checker.exactly_once(h)
    assert not v.valid
    assert v.offending["duplicated"] == ["e0"]
    assert v.offending["missing"] == v.offending["unexpected"] == []
