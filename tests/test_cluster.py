"""The local cluster: started from the kit's server binary, found, used, failed over, stopped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from eventlab import broker as broker_mod
from eventlab import cluster as cluster_mod
from eventlab import streams


def test_each_cluster_serves_every_slot(each_cluster: cluster_mod.Cluster) -> None:
    """Three primaries share the 16384 slots and each has one replica."""
    nodes = each_cluster.nodes()
    primaries = [n for n in nodes if n.role == "primary"]
    replicas = [n for n in nodes if n.role == "replica"]
    assert len(primaries) == 3
    assert sum(n.slots for n in primaries) == cluster_mod.SLOTS
    assert sorted(n.primary for n in replicas) == sorted(n.port for n in primaries)


def test_url_of_a_cluster_gets_the_cluster_client(
    each_cluster: cluster_mod.Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """REDIS_URL naming one node of a cluster is detected; its clients follow the slots."""
    monkeypatch.setenv("REDIS_URL", each_cluster.url)
    handle = broker_mod.up()
    assert handle.cluster
    assert broker_mod.is_cluster(each_cluster.url)
    client = broker_mod.connect()
    assert isinstance(client, redis.RedisCluster)
    keys = [streams.stream_key(f"part-{i}", namespace_="t-url") for i in range(4)]
    for key in keys:
        client.xadd(key, {"n": "1"})
    assert len(cluster_mod.where(client, keys)["node"].unique()) >= 2
    assert all(client.xlen(key) == 1 for key in keys)
    client.close()


def test_single_node_url_stays_single(broker: broker_mod.Broker) -> None:
    """A plain server is not mistaken for a cluster."""
    assert not broker_mod.is_cluster(broker.url)
    assert not broker.cluster


def test_up_down_status(tmp_path: Path) -> None:
    """`broker.up` returns the recorded cluster; `broker.down` stops every node of it."""
    handle = cluster_mod.up(state=tmp_path, node_timeout=2.0)
    assert cluster_mod.up(state=tmp_path).ports == handle.ports  # idempotent
    found = broker_mod.current(state=tmp_path)
    assert found is not None
    assert found.cluster
    assert broker_mod.up(state=tmp_path).cluster
    pids = [handle.pid(p) for p in handle.ports]
    assert broker_mod.down(state=tmp_path)
    assert not any(broker_mod._pid_alive(pid) for pid in pids)
    assert cluster_mod.current(state=tmp_path) is None
    assert not broker_mod.down(state=tmp_path)


def test_too_few_primaries_refused(tmp_path: Path) -> None:
    """A cluster that could never fail over is refused with the fix."""
    with pytest.raises(broker_mod.BrokerError, match="at least 3 primaries"):
        cluster_mod.up(state=tmp_path, primaries=2)


def test_cross_slot_script_refused(each_cluster: cluster_mod.Cluster) -> None:
    """One script over two streams of different slots is refused (the client names it)."""
    client = each_cluster.client()
    one, two = "{t-x:orders}", "{t-x:payments}"
    assert cluster_mod.slot_of(one) != cluster_mod.slot_of(two)
    with pytest.raises(redis.RedisClusterException, match=r"same key slot|CROSSSLOT"):
        client.eval("return 1", 2, one, two)
    client.close()


def test_primary_killed_replica_takes_over(each_cluster: cluster_mod.Cluster) -> None:
    """A killed primary's replica is promoted with the replicated entries; the node rejoins."""
    client = each_cluster.client()
    key = "{t-fail:orders}"
    for n in range(50):
        client.xadd(key, {"n": str(n)})
    client.execute_command("WAIT", 1, 1000, target_nodes=client.get_node_from_key(key))
    victim = each_cluster.primary_of(key)
    heir = each_cluster.replica_of(victim)
    each_cluster.kill(victim)
    each_cluster.wait_ok()
    assert each_cluster.primary_of(key) == heir
    assert client.xlen(key) == 50
    each_cluster.restart(victim)
    each_cluster.wait_ok()
    roles = {n.port: n.role for n in each_cluster.nodes()}
    assert roles[victim] == "replica"
    client.close()


def test_cli_up_cluster_status_down(tmp_path: Path) -> None:
    """`up --cluster` starts six nodes, `status` lists them and the streams, `down` stops them."""
    state = ["--state", str(tmp_path)]
    up = _run(*state, "up", "--cluster", "--persistence", "none", "--json")
    assert up.returncode == 0, up.stderr
    info = json.loads(up.stdout)
    assert info["cluster"] is True
    assert sorted(n["role"] for n in info["nodes"]) == ["primary"] * 3 + ["replica"] * 3
    client = redis.RedisCluster.from_url(info["url"], decode_responses=True)
    client.xadd(streams.stream_key("orders"), {"k": "v"})
    client.close()
    status = _run(*state, "status", "--json")
    assert status.returncode == 0, status.stderr
    shown = json.loads(status.stdout)
    assert shown["cluster"] is True
    assert len(shown["nodes"]) == 6
    assert shown["streams"] == {"{lab:orders}": 1}
    down = _run(*state, "down")
    assert "broker stopped" in down.stdout
    assert _run(*state, "status").returncode == 2


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REDIS_URL", "EVENTLAB_"))}
    return subprocess.run(
        [sys.executable, "-m", "eventlab.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        env=env,
        timeout=60,
    )
