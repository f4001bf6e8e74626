"""eventlab.scenarios: each scenario, run twice with one seed, shows its verdict both times."""

from __future__ import annotations

import json

import pytest

from eventlab import scenarios, streams
from eventlab.envelope import Event

SEED = 11


def _twice(run):
    first, second = run(), run()
    assert first.as_expected, str(first)
    assert second.as_expected, str(second)
    assert first.outcome() == second.outcome()
    return first, second


@pytest.mark.parametrize("kind", ["valkey", "redis"])
def test_consumer_kill_before_ack_duplicates_the_unacked_batch(fresh_broker, kind):
    """Kill -9 between effect and ack: nothing lost, the batch's effect twice unless deduped."""
    broker = fresh_broker(kind=kind)
    first, second = _twice(
        lambda: scenarios.consumer_kill_before_ack(broker, seed=SEED, events=120)
    )
    for result in (first, second):
        naive = result.verdicts["exactly-once (naive effect)"]
        assert naive.counts["duplicated"] == result.facts["stranded_pending"] == 10
        assert result.verdicts["total-queue"].counts["lost"] == 0
        assert any(r["f"] == "kill-consumer" for r in result.history.records())
    assert first.facts == second.facts
    assert (
        first.verdicts["exactly-once (naive effect)"].offending
        == second.verdicts["exactly-once (naive effect)"].offending
    )


def test_consumer_worker_gets_the_broker_url_from_its_environment_not_argv(
    fresh_broker, monkeypatch
):
    """The crashing worker's command line (public in `ps`) never holds the broker URL."""
    from eventlab import processes  # noqa: PLC0415

    broker = fresh_broker()
    real_spawn, cmdlines = processes.spawn, []

    def spawn_and_look(*args, **kwargs):
        proc = real_spawn(*args, **kwargs)
        with open(f"/proc/{proc.pid}/cmdline", "rb") as cmdline:  # noqa: PTH123
            cmdlines.append(cmdline.read().decode(errors="replace"))
        return proc

    monkeypatch.setattr(processes, "spawn", spawn_and_look)
    result = scenarios.consumer_kill_before_ack(broker, seed=SEED, events=40)
    assert result.as_expected
    assert len(cmdlines) == 1
    assert "crashing_consumer" in cmdlines[0]
    assert broker.url not in cmdlines[0]
    assert f":{broker.port}" not in cmdlines[0]


def test_broker_restart_without_persistence_loses_stream_and_group(fresh_broker):
    """Restart with persistence none: NOGROUP on the next read, the unread half reported lost."""
    first, second = _twice(
        lambda: scenarios.broker_restart_no_persistence(fresh_broker(), seed=SEED, events=100)
    )
    for result in (first, second):
        assert result.facts["stream_length_after"] == 0
        assert result.facts["read_error_after"] == "NOGROUP"
        assert result.verdicts["total-queue"].counts["lost"] == 50
    assert first.verdicts["total-queue"].offending == second.verdicts["total-queue"].offending


@pytest.mark.parametrize("kind", ["valkey", "redis"])
def test_kill9_loses_everything_under_rdb_and_nothing_under_aof_always(fresh_broker, kind):
    """Kill -9: RDB loses every write since its snapshot; AOF always loses none (both servers)."""
    first, second = _twice(
        lambda: scenarios.kill9_rdb_vs_aof(fresh_broker(kind=kind), seed=SEED, events=150)
    )
    for result in (first, second):
        assert result.facts["lost (rdb)"] == 150
        assert result.facts["lost (aof-always)"] == 0


def test_graceful_restart_loses_nothing(fresh_broker):
    """A graceful restart (SHUTDOWN SAVE) keeps stream, group and position."""
    first, _ = _twice(
        lambda: scenarios.graceful_restart(fresh_broker(persistence="aof-everysec"), seed=SEED)
    )
    assert first.facts["stream_length_after"] == 200


def test_private_broker_is_used_and_stopped_when_none_is_given():
    """Without a broker, a crash scenario starts a private one and stops it afterwards."""
    result = scenarios.run("broker_restart_no_persistence", seed=SEED, events=20)
    assert result.as_expected
    assert result.verdicts["total-queue"].counts["lost"] == 10


def test_lost_publish_reply_gives_a_duplicate_entry_but_one_effect(broker, client):  # noqa: ARG001
    """Reply lost, publish retried: one entry too many in the stream; dedupe keeps one effect."""
    first, second = _twice(lambda: scenarios.lost_publish_reply(broker, seed=SEED, events=60))
    for result in (first, second):
        assert result.facts["stream_length"] == 61
        assert result.verdicts["total-queue"].counts["duplicated"] == 1
        types = [
            r["type"]
            for r in result.history.records()
            if r["f"] == "enqueue" and r["type"] != "invoke"
        ]
        assert types.count("info") == 1
    assert first.facts["victim"] == second.facts["victim"]


def test_out_of_order_regresses_last_write_wins_but_not_versioned_upsert(broker, client):  # noqa: ARG001
    """Two racing consumers: versioned upsert never goes back and ends newest; LWW regresses."""
    first, second = _twice(lambda: scenarios.out_of_order_two_consumers(broker, seed=SEED))
    for result in (first, second):
        assert result.facts["wrong_at_end (versioned)"] == 0
        assert result.verdicts["monotonic (last write wins)"].counts["regressions"] > 0
        assert result.facts["per_key_inversions"] > 0  # one key's versions really shuffled
    assert (
        first.verdicts["monotonic (last write wins)"].counts
        == second.verdicts["monotonic (last write wins)"].counts
    )
    assert first.facts == second.facts


def test_out_of_order_publishes_one_keys_versions_shuffled_for_every_seed(broker, client):
    """Versions of one aggregate are in the log newest-first somewhere, for five seeds."""
    stream = streams.stream_key("scn-out-of-order")
    for seed in range(5):
        result = scenarios.out_of_order_two_consumers(broker, seed=seed)
        # recount from the log itself: the order the broker holds the entries in
        logged = [Event.from_fields(fields) for _, fields in streams.entries(client, stream)]
        assert len(logged) == 8 * 12
        assert result.facts["per_key_inversions"] == scenarios.per_key_inversions(logged) > 0
        assert result.as_expected, str(result)


def test_latency_then_partition_then_heal_converges_and_reports_the_time(broker, client):  # noqa: ARG001
    """After latency and a partition heal, the projection equals the fold of the log within T."""
    first, second = _twice(
        lambda: scenarios.latency_partition_heal(broker, seed=SEED, events=100, within=5.0)
    )
    for result in (first, second):
        verdict = result.verdicts["convergence"]
        assert verdict.convergence_seconds is not None
        assert 0.0 <= verdict.convergence_seconds <= 5.0
        assert list(result.history.fault_windows()["fault"]) == ["latency", "partition"]
        assert list(verdict.frames["convergence"].columns) == ["time", "disagreeing", "compared"]
        assert verdict.frames["convergence"]["compared"].iloc[-1] > 0  # evidence: views not empty


def test_maxlen_trimming_while_consumer_down_is_lost_by_retention(broker, client):  # noqa: ARG001
    """MAXLEN trims entries a stopped consumer never read: exactly those are reported lost."""
    first, second = _twice(
        lambda: scenarios.maxlen_trimming(broker, seed=SEED, events=200, maxlen=50)
    )
    for result in (first, second):
        # 50 read before the stop, 50 still in the stream: 100 trimmed unread
        assert result.verdicts["lost-by-retention"].counts["lost"] == 100
        assert result.facts["stream_length"] == 50
    assert (
        first.verdicts["lost-by-retention"].offending
        == second.verdicts["lost-by-retention"].offending
    )


def test_group_created_after_events_skips_them_at_dollar(broker, client):  # noqa: ARG001
    """A group created at $ after the events reads none of them; at 0 it reads all."""
    first, _ = _twice(lambda: scenarios.group_after_events(broker, seed=SEED, events=50))
    assert first.verdicts["total-queue (start $)"].counts["lost"] == 50
    assert first.verdicts["total-queue (start 0)"].counts["delivered"] == 50


def test_unknown_scenario_names_the_known_ones():
    """run() with a wrong name lists the scenarios."""
    with pytest.raises(scenarios.faults.FaultError, match="group_after_events"):
        scenarios.run("nope")


def test_summary_has_one_row_per_verdict(broker, client):  # noqa: ARG001
    """summary() gives verdict, valid, expected and counts per verdict."""
    result = scenarios.group_after_events(broker, seed=SEED, events=10)
    frame = result.summary()
    assert list(frame.columns) == ["verdict", "valid", "expected", "counts"]
    assert len(frame) == 2
    assert "lost=10" in frame.loc[frame["verdict"] == "total-queue (start $)", "counts"].iloc[0]


def test_handler_error_sticks_pending_under_faststream_but_not_eventlab(broker, client):  # noqa: ARG001
    """A failed handler: faststream leaves it pending even after restart; the runtime retries it."""
    first, second = _twice(
        lambda: scenarios.handler_error_defaults(broker, seed=SEED, events=40, failing=4)
    )
    for result in (first, second):
        assert result.facts["pending after first run (faststream)"] == 4
        assert result.facts["pending after restarted run (faststream)"] == 4
        # the restarted subscriber handled the marker published after it started,
        # yet re-read none of its failed pending entries
        assert result.facts["redelivered after restart (faststream)"] == 0
        assert result.facts["pending after run (eventlab)"] == 0
        assert result.verdicts["total-queue (faststream defaults)"].counts["lost"] == 4
    assert (
        first.verdicts["total-queue (faststream defaults)"].offending["lost"]
        == second.verdicts["total-queue (faststream defaults)"].offending["lost"]
    )


def test_poison_and_invalid_entries_are_dead_lettered_with_reasons(broker, client):  # noqa: ARG001
    """Poison events go to the DLQ after max deliveries, invalid ones at once; the rest flows."""
    first, _ = _twice(lambda: scenarios.poison_to_dlq(broker, seed=SEED, events=30, poison=2))
    assert first.verdicts["dead-letters"].counts == {
        "expected": 3,
        "dead_lettered": 3,
        "pending": 0,
    }
    assert any("max_deliveries" in reason for reason in first.facts["reasons"])
    assert any("not a valid event" in reason for reason in first.facts["reasons"])


def test_slow_handler_is_stolen_and_processed_twice_with_one_effect(broker, client):  # noqa: ARG001
    """A handler slower than min_idle is reclaimed by another consumer: one effect."""
    first, _ = _twice(lambda: scenarios.slow_handler_stolen(broker, seed=SEED, events=20))
    assert first.facts["deliveries_of_slow_event"] >= 2
    assert first.verdicts["total-queue"].counts["duplicated"] >= 1
    assert first.verdicts["exactly-once"].counts["duplicated"] == 0


async def test_runtime_scenarios_also_run_inside_an_event_loop(broker, client):  # noqa: ARG001
    """A notebook's running loop is no obstacle: the scenario runs its loop on a thread."""
    result = scenarios.handler_error_defaults(broker, seed=SEED, events=10, failing=1)
    assert result.as_expected


def test_every_scenario_is_registered():
    """SCENARIOS holds the twelve scenarios of the course."""
    assert len(scenarios.SCENARIOS) == 12


def test_cli_runs_a_scenario_and_lists_them(broker, client, capsys):  # noqa: ARG001
    """`eventlab faults scenario NAME --json` prints the verdicts; without a name it lists all."""
    from eventlab import cli  # noqa: PLC0415

    state = str(broker.state)
    args = ["faults", "scenario", "group_after_events", "--seed", "3", "--state", state, "--json"]
    assert cli.main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["as_expected"] is True
    assert report["verdicts"]["total-queue (start $)"]["valid"] is False
    assert cli.main(["faults", "scenario"]) == 0
    assert set(capsys.readouterr().out.split()) == set(scenarios.SCENARIOS)
