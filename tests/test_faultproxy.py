"""eventlab._faultproxy: crashes below learner code, on whatever connection sends the command."""

from __future__ import annotations

import os
import signal
import time

import pytest
import redis

from eventlab import _labkit as kit
from eventlab import broker as broker_mod
from eventlab._faultproxy import FaultProxy, parse_commands


def test_parse_commands_splits_requests_and_keeps_a_partial_one():
    """RESP requests are split at their ends; an incomplete one waits for more bytes."""
    data = b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n*1\r\n$4\r\nPING\r\n*2\r\n$3\r\nSET"
    found = parse_commands(data)
    assert [args for args, _ in found] == [[b"GET", b"a"], [b"PING"]]
    assert found[-1][1] == data.index(b"*2\r\n$3\r\nSET")


@pytest.fixture
def proxy(broker):
    """A fault proxy in front of the session broker."""
    made = FaultProxy(broker.url)
    yield made
    made.close()


def _own_connections(url: str, key: str) -> None:
    """Three writes, each on a connection of its own (as a learner might)."""
    for n in range(3):
        client = redis.Redis.from_url(url)
        client.rpush(key, n)
        client.close()


def _transaction_then_write(url: str, key: str) -> None:
    client = redis.Redis.from_url(url)
    pipe = client.pipeline(transaction=True)
    pipe.rpush(key, "a")
    pipe.rpush(key, "b")
    pipe.execute()
    client.rpush(key, "c")


def _doomed(proxy: FaultProxy, target, *args, before: int) -> int:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(write)
        os.read(read, 1)
        code = 0
        try:
            target(*args)
        except BaseException:  # noqa: BLE001 - the child only reports its exit code
            code = 1
        os._exit(code)
    os.close(read)
    proxy.doom(pid, before=before)
    os.write(write, b"1")
    os.close(write)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.parametrize(("before", "applied"), [(1, 0), (2, 1), (3, 2), (4, 3)])
def test_doomed_process_dies_before_its_nth_command_on_any_connection(
    proxy, client, before, applied
):
    """before=N: commands 1…N-1 ran, N never reached the server, though each had its own socket."""
    key = f"lab:{{proxy}}:{before}"
    code = _doomed(proxy, _own_connections, proxy.url, key, before=before)
    assert code == (-signal.SIGKILL if before <= 3 else 0)
    assert client.llen(key) == applied


def test_a_transaction_counts_once_and_is_never_cut(proxy, client):
    """MULTI/EXEC is one step: killed before it, nothing; before the next, both pushes."""
    key = "lab:{proxy}:tx"
    assert _doomed(proxy, _transaction_then_write, proxy.url, key, before=1) == -signal.SIGKILL
    assert client.llen(key) == 0
    assert _doomed(proxy, _transaction_then_write, proxy.url, key, before=2) == -signal.SIGKILL
    assert client.lrange(key, 0, -1) == ["a", "b"]


def test_processes_not_doomed_pass_through(proxy, client):
    """Connections of processes nobody doomed are forwarded untouched."""
    other = redis.Redis.from_url(proxy.url, decode_responses=True)
    assert other.ping()
    other.set("lab:{proxy}:plain", "1")
    assert client.get("lab:{proxy}:plain") == "1"
    other.close()


def test_out_of_order_reads_a_log():
    """A `then` before any `first` is out of order; `first` first, or no `then`, is in order."""
    assert kit.out_of_order(["XACK", "XADD"], first="XADD", then="XACK")
    assert not kit.out_of_order(["XADD", "XACK"], first="XADD", then="XACK")
    assert not kit.out_of_order(["EXEC"], first="XADD", then="XACK")


def test_fork_without_the_grader_counts_in_process(broker, client):
    """Outside the grader (no proxy), fork(die_before=N) kills after N-1 redis-py commands."""
    key = "lab:{proxy}:fallback"

    def three(url: str) -> None:
        own = redis.Redis.from_url(url)
        for n in range(3):
            own.rpush(key, n)
        time.sleep(0.01)

    worker = kit.fork(three, broker.url, die_before=3)
    assert worker.join(10.0)
    assert worker.exitcode == -signal.SIGKILL
    assert client.llen(key) == 2


def _three_trips(url: str, key: str) -> None:
    client = redis.Redis.from_url(url)
    client.rpush(key, "x")  # 1 (the handshake before it is free)
    pipe = client.pipeline(transaction=True)
    for n in range(500):  # one transaction, however many packets it takes: 2
        pipe.rpush(key, "y" * 200 + str(n))
    pipe.execute()
    client.llen(key)  # 3


def test_round_trips_counted_per_process_a_transaction_once(proxy, client):
    """trips(): one per write awaiting no reply; a transaction is one; the handshake is free."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(write)
        os.read(read, 1)
        _three_trips(proxy.url, "lab:{proxy}:trips")
        time.sleep(0.2)  # stay alive while the test reads the count
        os._exit(0)
    os.close(read)
    proxy.doom(pid, before=0)
    os.write(write, b"1")
    os.close(write)
    deadline = time.monotonic() + 10
    while client.llen("lab:{proxy}:trips") < 501 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    assert proxy.trips(pid) == 3
    os.waitpid(pid, 0)


def _cluster_writes(url: str, keys: list[str]) -> None:
    """One write per key with a cluster client; the keys sit on different nodes."""
    client = broker_mod.client_for_url(url)
    for key in keys:
        client.rpush(key, "x")


@pytest.mark.parametrize("before", [2, 3])
def test_on_a_cluster_every_node_goes_through_the_proxy(cluster, before):
    """A cluster client learns the proxy's addresses: killed before its Nth write, on any node."""
    upstream = cluster.broker.client(decode_responses=True)
    made = FaultProxy(cluster.broker.url)
    keys = [f"{{proxy-{slot}}}:k" for slot in ("a", "b", "c", "d", "e", "f")]
    try:
        nodes = {upstream.get_node_from_key(key).name for key in keys}
        assert len(nodes) > 1  # the sweep crosses nodes
        code = _doomed(made, _cluster_writes, made.url, keys, before=before)
        assert code == -signal.SIGKILL
        assert [upstream.llen(key) for key in keys] == [1] * (before - 1) + [0] * (7 - before)
        # a client sent to the wrong node is redirected to the proxy, not past it
        plain = redis.Redis.from_url(made.url)
        moved = [key for key in keys if upstream.get_node_from_key(key).name != _seed(cluster)]
        with pytest.raises(redis.exceptions.MovedError) as error:
            plain.get(moved[0])
        assert error.value.host == "127.0.0.1"
        assert f"127.0.0.1:{error.value.port}" not in {n.name for n in upstream.get_nodes()}
        plain.close()
    finally:
        made.close()
        upstream.delete(*keys)
        upstream.close()


def _seed(cluster) -> str:
    """The address of the node the cluster's URL names."""
    return f"127.0.0.1:{cluster.broker.port}"
