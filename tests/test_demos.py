"""The lessons' crash-demo services: a kill between effect and ack duplicates only the naive one."""

from __future__ import annotations

import asyncio

import pytest

from eventlab import demos, processes, streams
from eventlab.envelope import Event


def _deposits(client, stream):
    events = [
        Event(type="Deposited", source="accounts", subject="a", data={"amount": 50})
        for _ in range(10)
    ]
    streams.publish_many(client, stream, events)


def _balance(client, stream):
    return int(client.hget(demos.balance_key(stream), "a") or 0)


def _kill_then_finish(broker, client, target, stream, *, pause, batch_args=()):
    proc = processes.spawn(target, args=[broker.url, stream, "g", "c1", pause, *batch_args])
    proc.wait_ready()
    demos.wait_until(lambda: _balance(client, stream) >= 100)
    proc.kill()
    killed_at = _balance(client, stream)
    proc = processes.spawn(target, args=[broker.url, stream, "g", "c1"])
    proc.wait_ready()
    demos.wait_until(lambda: demos.drained(client, stream, "g"))
    proc.terminate()
    return killed_at


@pytest.mark.slow  # kills a process: `make test` runs it, `make check` does not
def test_naive_consumer_applies_an_effect_twice_after_a_kill_before_ack(broker, client):
    """demos.naive: the entry whose effect was applied is redelivered and applied again."""
    stream = streams.stream_key("naive")
    _deposits(client, stream)
    _kill_then_finish(broker, client, "eventlab.demos:naive", stream, pause="0.3")
    assert _balance(client, stream) == 550


@pytest.mark.slow  # kills a process: `make test` runs it, `make check` does not
def test_reliable_consumer_applies_each_effect_once_after_a_kill(broker, client):
    """demos.reliable: effect and ack are atomic, so the same kill leaves a balance of 500."""
    stream = streams.stream_key("reliable")
    _deposits(client, stream)
    _kill_then_finish(
        broker, client, "eventlab.demos:reliable", stream, pause="0.1", batch_args=("2",)
    )
    assert _balance(client, stream) == 500


def test_wait_until_gives_up_with_timeout_error():
    """wait_until raises TimeoutError when the condition stays false."""
    with pytest.raises(TimeoutError):
        demos.wait_until(lambda: False, timeout=0.05)
    assert demos.wait_until(lambda: 7) == 7


async def test_await_until_polls_without_blocking_the_loop():
    """await_until lets other tasks run while it waits, and times out when nothing changes."""
    flag = []
    task = asyncio.get_running_loop().call_later(0.02, flag.append, 1)
    assert await demos.await_until(lambda: flag, timeout=2) == [1]
    task.cancel()
    with pytest.raises(TimeoutError):
        await demos.await_until(lambda: False, timeout=0.05)


DEPOSIT_LUA = """
if redis.call('ZADD', KEYS[3], 'NX', 0, ARGV[3]) == 1 then
  redis.call('HINCRBY', KEYS[2], ARGV[4], ARGV[5])
end
return redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
"""


@pytest.mark.slow  # kills a process: `make test` runs it, `make check` does not
def test_scripted_consumer_runs_the_given_script_and_survives_a_kill(broker, client):
    """demos.scripted: lesson 03's effect+mark+XACK script, killed mid-run, counts each once."""
    stream = streams.stream_key("scripted")
    _deposits(client, stream)
    proc = processes.spawn(
        "eventlab.demos:scripted", args=[broker.url, stream, "g", "c1", DEPOSIT_LUA, "0.2"]
    )
    proc.wait_ready()
    demos.wait_until(lambda: _balance(client, stream) >= 100)
    proc.kill()
    assert streams.pending_summary(client, stream, "g").count > 0
    proc = processes.spawn(
        "eventlab.demos:scripted", args=[broker.url, stream, "g", "c1", DEPOSIT_LUA]
    )
    proc.wait_ready()
    demos.wait_until(lambda: demos.drained(client, stream, "g"))
    proc.terminate()
    assert _balance(client, stream) == 500
    assert client.zcard(demos.seen_key(stream)) == 10
