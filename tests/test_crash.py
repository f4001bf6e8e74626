"""eventlab._crash: die right after the Nth command, and the consumer commit swept under it.

The sweep is the crash test the consumer's commit needs: a kill from outside
lands in a handler, so a commit split into two calls passed it by luck. Here the
consumer process kills itself after each step of each commit in turn (N = 1,
2, … until a run finishes first), and every event must still have exactly one
effect once a consumer restarts or reclaims.
"""

from __future__ import annotations

import itertools
import time

import pytest
import redis

from eventlab import _labkit as kit
from eventlab import processes, streams
from eventlab._crash import die_after_commands
from eventlab.envelope import Event
from tests._consumer_demo import effects_key


class _DiedError(Exception):
    """Raised instead of SIGKILL by the in-process tests of the counting."""


def _die() -> None:
    raise _DiedError


def test_counts_writes_not_background_reads(client):
    """Writes count in order; XRANGE, XINFO, XPENDING, XGROUP and PING do not."""
    client.xgroup_create("lab:{c}", "g", id="0", mkstream=True)
    with die_after_commands(0) as commands:
        client.set("lab:{c}:a", "1")
        client.xrange("lab:{c}")
        client.xinfo_groups("lab:{c}")
        client.xpending("lab:{c}", "g")
        client.ping()
        client.hincrby("lab:{c}:h", "f", 1)
        client.xack("lab:{c}", "g", "1-0")
    assert commands.counted == ["SET", "HINCRBY", "XACK"]


def test_dies_right_after_the_nth_reply_and_sends_nothing_more(client):
    """n=2: the second write is answered (applied), then the process dies; the third never runs."""
    with die_after_commands(2, kill=_die):
        client.set("a", "1")
        with pytest.raises(_DiedError):
            client.set("b", "2")
    assert client.mget("a", "b", "c") == ["1", "2", None]


def test_a_script_counts_once_a_noscript_reply_not_and_ignored_scripts_never(client):
    """A script's first call (NOSCRIPT, load, EVALSHA) is one step; ignored scripts are none."""
    client.script_flush()
    counted_script = client.register_script("return redis.call('INCR', KEYS[1])")
    with die_after_commands(0, ignore_scripts=["return 1"]) as commands:
        counted_script(keys=["n"])
        client.eval("return 1", 0)
        counted_script(keys=["n"])
    assert commands.counted == ["EVALSHA", "EVALSHA"]
    assert client.get("n") == "2"


def test_a_pipeline_is_one_step(client):
    """MULTI/EXEC and a plain pipeline each count once: a client cannot die inside them."""
    with die_after_commands(0) as commands:
        pipe = client.pipeline(transaction=True)
        pipe.set("a", "1")
        pipe.incr("n")
        pipe.execute()
        pipe = client.pipeline(transaction=False)
        pipe.xrange("lab:{c}")  # a pipeline of background reads only does not count
        pipe.execute()
    assert commands.counted == ["PIPELINE"]


async def test_asyncio_clients_count_too(broker, client):
    """The asyncio client (the consumer runtime's) is counted like the sync one."""
    aclient = broker.async_client()
    try:
        with die_after_commands(1, kill=_die), pytest.raises(_DiedError):
            await aclient.set("x", "1")
    finally:
        await aclient.aclose()
    assert client.mget("x", "y") == ["1", None]


def test_clients_are_restored_after_the_block(client):
    """Leaving the block unpatches redis-py: later commands are neither counted nor fatal."""
    with die_after_commands(1, kill=_die) as commands:
        pass
    client.set("a", "1")
    assert commands.counted == []
    assert client.execute_command.__qualname__ == "Redis.execute_command"
    with pytest.raises(ValueError, match=">= 0"), die_after_commands(-1):
        pass


def _three_writes(url: str) -> None:
    client = redis.Redis.from_url(url, decode_responses=True)
    with die_after_commands(2):
        for key in ("a", "b", "c"):
            client.set(key, "1")


def test_a_real_process_is_sigkilled(broker, client):
    """In a real child the kill is SIGKILL (exit -9), after step 2 took effect, before step 3."""
    worker = kit.fork(_three_writes, broker.url)
    assert worker.join(10.0)
    assert worker.exitcode == -9
    assert client.mget("a", "b", "c") == ["1", "1", None]


# -- the consumer's commit, cut after every step -------------------------------------

EVENTS = 3
BATCH = 2  # two commits: entries 1-2, then entry 3


def _drained(client: redis.Redis, stream: str) -> bool:
    groups = client.xinfo_groups(stream) if client.exists(stream) else []
    return bool(groups) and all(g["pending"] == 0 and g["lag"] == 0 for g in groups)


def _wait(condition, *, timeout: float = 30.0, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _counter(url: str, stream: str, consumer: str, *, die_after: int) -> processes.Proc:
    # min_idle 0.3 s: the other consumer reclaims what the dead one held
    args = [url, stream, "billing", consumer, "0.3", "0", str(BATCH), str(die_after)]
    return processes.spawn("tests._consumer_demo:counter", args=args, name=f"cut-{consumer}")


def _ready(proc: processes.Proc) -> bool:
    try:
        proc.wait_ready(timeout=0)
    except processes.ProcessError:
        return False
    return True


def _exactly_once(client: redis.Redis, stream: str, ids: list[str], *, when: str) -> None:
    counts = client.hgetall(effects_key(stream))
    applied = [int(counts.get(event_id, 0)) for event_id in ids]
    assert applied == [1] * len(ids), f"{when}: effects per event {applied}, expected one each"
    assert set(counts) <= set(ids)


@pytest.mark.parametrize("restart", ["same-consumer", "other-consumer"])
def test_commit_cut_after_every_step_has_exactly_once_effects(broker, client, restart):
    """Killed after each commit step in turn, then restarted or reclaimed: one effect per event."""
    killed = []
    for n in itertools.count(1):
        assert n <= 4 * EVENTS, "the sweep never reached a run that finished"
        stream = streams.stream_key(f"cut{n}-{restart}")
        events = [Event(type="Paid", source="billing", data={"n": i}) for i in range(EVENTS)]
        streams.publish_many(client, stream, events)
        ids = [e.id for e in events]
        first = _counter(broker.url, stream, "a", die_after=n)
        try:
            _wait(
                lambda: not first.alive or (_ready(first) and _drained(client, stream)),  # noqa: B023
                what=f"the consumer to die after step {n} or finish",
            )
            # SIGTERM stops it gracefully (0) unless it was killing itself at that moment
            code = first.terminate(timeout=10)
        finally:
            first.kill()
        if code == 0:  # it finished without reaching step n: every step was cut once
            _exactly_once(client, stream, ids, when=f"a run with no kill (n={n})")
            break
        assert code == -9, first.log()
        killed.append(n)
        name = "a" if restart == "same-consumer" else "b"
        again = _counter(broker.url, stream, name, die_after=0)
        try:
            again.wait_ready(timeout=30)
            _wait(lambda: _drained(client, stream), what=f"recovery after step {n}")  # noqa: B023
            assert again.terminate(timeout=10) == 0
        finally:
            again.kill()
        _exactly_once(client, stream, ids, when=f"killed after commit step {n}, then {restart}")
        assert client.zcard(f"{stream}:seen:billing") == EVENTS
    assert killed == list(range(1, len(killed) + 1))
    assert len(killed) >= 2  # at least one step per commit, and there are two commits
