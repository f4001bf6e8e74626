"""reconcile: an anti-entropy job writes exactly the drift, atomically, yielding to live writers."""

from __future__ import annotations

import pytest

from eventlab import reconcile
from eventlab._errors import EventlabError

KEY = "lab:test:view"
VERSIONS = "lab:test:view:versions"


def test_drift_compares_as_text():
    """Fields are compared as a hash stores them: 5 and "5" agree; missing and extra are found."""
    write, remove = reconcile.drift({"a": "5", "b": "x", "z": "1"}, {"a": 5, "b": "y", "c": 0})
    assert write == ["b", "c"]
    assert remove == ["z"]


def test_repairs_missing_different_and_extra_fields_then_nothing(client):
    """One run makes every hash equal its truth; a second run finds nothing to repair."""
    client.hset(KEY, mapping={"o1": "confirmed", "o2": "placed", "ghost": "confirmed"})
    client.hset(VERSIONS, mapping={"o1": "3"})
    truth = {
        KEY: {"o1": "confirmed", "o2": "cancelled", "o3": "placed"},
        VERSIONS: {"o1": 3, "o2": 4},
    }
    first = reconcile.reconcile(client, lambda: truth)
    assert first.applied
    assert sorted(first.written) == [(KEY, "o2"), (KEY, "o3"), (VERSIONS, "o2")]
    assert first.removed == ((KEY, "ghost"),)
    assert client.hgetall(KEY) == {"o1": "confirmed", "o2": "cancelled", "o3": "placed"}
    assert client.hgetall(VERSIONS) == {"o1": "3", "o2": "4"}
    second = reconcile.reconcile(client, lambda: truth)
    assert second.repaired == 0


def test_dry_run_reports_and_writes_nothing(client):
    """A dry run lists the drift and leaves the stored hash as it was."""
    client.hset(KEY, mapping={"o1": "placed"})
    repair = reconcile.reconcile(client, lambda: {KEY: {"o1": "confirmed"}}, dry_run=True)
    assert not repair.applied
    assert repair.written == ((KEY, "o1"),)
    assert client.hgetall(KEY) == {"o1": "placed"}


def test_a_live_write_during_the_run_makes_it_start_over(client):
    """A key changed between WATCH and EXEC aborts the repair; the next run uses the newer truth."""
    client.hset(KEY, mapping={"o1": "placed"})
    calls = {"n": 0}
    other = client.connection_pool  # the live writer uses another connection of the same pool

    def truth():
        calls["n"] += 1
        if calls["n"] == 2:  # first run, after WATCH: the live projector writes
            import redis  # noqa: PLC0415

            redis.Redis(connection_pool=other).hset(KEY, "o1", "accepted, pending")
        return {KEY: {"o1": "confirmed"}}

    repair = reconcile.reconcile(client, truth)
    assert repair.attempts == 2
    assert client.hget(KEY, "o1") == "confirmed"


def test_gives_up_when_keys_never_settle(client):
    """A key that changes under every run ends in a clear error, not a stale overwrite."""

    def truth():
        client.hincrby(KEY, "n", 1)  # a writer that never stops
        return {KEY: {"n": 0}}

    with pytest.raises(EventlabError, match="kept changing"):
        reconcile.reconcile(client, truth, attempts=3)


def test_explain_accounts_for_every_repaired_field_as_drift_or_lag(client):
    """Repair.explain: one row per repaired field; tampered fields are drift, the rest lag."""
    client.delete("t:view", "t:view:versions")
    client.hset("t:view", mapping={"a": "1", "ghost": "x"})
    truth = {"t:view": {"a": "1", "b": "2", "c": "3"}, "t:view:versions": {"s|b": "1"}}
    repair = reconcile.reconcile(client, lambda: truth)
    fixes = repair.explain(tampered={("t:view", "ghost"), ("t:view", "b")})
    assert len(fixes) == repair.repaired == 4
    causes = {(r.key, r.field): (r.action, r.cause) for r in fixes.itertuples()}
    assert causes == {
        ("t:view", "b"): ("written", "drift"),
        ("t:view", "c"): ("written", "lag"),
        ("t:view:versions", "s|b"): ("written", "lag"),
        ("t:view", "ghost"): ("removed", "drift"),
    }
