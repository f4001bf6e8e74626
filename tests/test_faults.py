"""eventlab.faults: the TCP fault proxy (measured on a real broker), fault vocabulary, nemesis."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from eventlab import broker as broker_mod
from eventlab import cli, faults
from eventlab.envelope import EnvelopeError, Event
from eventlab.history import History

NO_RETRY = Retry(NoBackoff(), 0)


@pytest.fixture
def proxy(broker, client):  # noqa: ARG001 - client flushes the broker
    """A fault proxy in front of the (flushed) session broker, closed afterwards."""
    handle = faults.start(broker, record=False, seed=7)
    yield handle
    faults.stop()


def _direct_and_proxied(proxy, **kw):
    return proxy.client(retry=NO_RETRY, socket_timeout=kw.get("timeout", 5.0))


def _answers(c: redis.Redis) -> bool:
    try:
        return bool(c.ping())
    except redis.TimeoutError:
        return False  # a short-timeout client on a loaded machine: try again


def _connected(c: redis.Redis) -> redis.Redis:
    """Return ``c`` once a PING got through (its timeout is short on purpose)."""
    _eventually(lambda: _answers(c), "a first PING through the proxy")
    return c


def _eventually(condition, what: str, timeout: float = 30.0) -> None:
    """Wait for ``condition()`` (a loaded machine may be slow); fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"waited {timeout:g} s for {what}"
        time.sleep(0.01)


def _rtt(c: redis.Redis, n: int = 8) -> float:
    c.ping()
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        c.ping()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


@pytest.mark.parametrize(
    ("seconds", "direction", "factor"),
    [(0.2, "downstream", 1), (0.2, "upstream", 1), (0.1, "both", 2)],
)
def test_latency_is_within_20_percent_of_what_was_asked(proxy, seconds, direction, factor):
    """Injected latency adds `seconds` per direction to a round trip, within 20%."""
    c = _direct_and_proxied(proxy)
    base = _rtt(c)
    with faults.latency(seconds, direction=direction):
        slowed = _rtt(c, n=5)
    added = slowed - base
    assert added == pytest.approx(seconds * factor, rel=0.2)
    assert _rtt(c) < seconds / 2  # the context manager turned it off
    c.close()


def test_jitter_spreads_delays_around_the_latency(proxy):
    """Latency with jitter varies per reply but centres on the latency (median within 20%)."""
    c = _direct_and_proxied(proxy)
    c.ping()
    samples = []
    with faults.latency(0.1, jitter=0.03):
        for _ in range(20):
            started = time.perf_counter()
            c.ping()
            samples.append(time.perf_counter() - started)
    # the median: one reply stalled by a loaded machine must not move the verdict
    assert statistics.median(samples) == pytest.approx(0.1, rel=0.2)
    assert max(samples) - min(samples) > 0.01
    c.close()


def test_bandwidth_limit_slows_a_large_reply(proxy, broker):
    """A 200 KB reply at 1 MB/s takes about 0.2 s (median of 3, within 20%)."""
    broker.client().set("big", "x" * 200_000)
    c = _direct_and_proxied(proxy)
    c.ping()
    samples = []
    with faults.bandwidth(1_000_000):
        for _ in range(3):  # the median shrugs off one sample stalled by a loaded machine
            started = time.perf_counter()
            assert len(c.get("big")) == 200_000
            samples.append(time.perf_counter() - started)
    assert statistics.median(samples) == pytest.approx(0.2, rel=0.2)
    c.close()


def test_bandwidth_zero_lifts_the_limit(proxy):
    """bandwidth(0) turns the limit off (like latency 0) instead of raising; negative is refused."""
    proxy.bandwidth(10, direction="both")
    assert proxy.status()["directions"]["upstream"]["bandwidth"] == 10
    handle = proxy.bandwidth(0, direction="both")
    for state in proxy.status()["directions"].values():
        assert state["bandwidth"] is None
    handle.undo()  # nothing to undo
    assert _rtt(_direct_and_proxied(proxy)) < 0.15  # 10 B/s would take seconds per ping
    with pytest.raises(faults.FaultError, match="bandwidth"):
        proxy.bandwidth(-1)


def test_unpartition_lifts_one_direction_and_keeps_the_other(proxy, broker):
    """unpartition(direction=…) ends one cut; the other direction stays cut."""
    c = _connected(_direct_and_proxied(proxy, timeout=0.3))
    history = History()
    proxy.partition(direction="both", history=history)
    faults.unpartition(direction="upstream", history=history)
    directions = proxy.status()["directions"]
    assert directions["upstream"]["partition"] is None
    assert directions["downstream"]["partition"] == "hold"
    with pytest.raises(redis.TimeoutError):  # the request reaches the broker, the reply is held
        c.xadd("s", {"id": "e1"})
    assert broker.client().xlen("s") == 1
    assert list(history.fault_windows()["fault"]) == ["partition"]
    faults.unpartition(direction="downstream")
    assert all(d["partition"] is None for d in proxy.status()["directions"].values())
    c.close()


def test_downstream_partition_applies_the_write_but_the_client_times_out(proxy, broker):
    """One-way partition (replies cut): the XADD happens, the client sees a timeout."""
    c = _connected(_direct_and_proxied(proxy, timeout=0.3))
    history = History()
    with (
        faults.partition(direction="downstream", history=history),
        pytest.raises(redis.TimeoutError),
        history.op("producer", "enqueue", "e1"),
    ):
        c.xadd("s", {"id": "e1"})
    # applied although the client never knew
    _eventually(lambda: broker.client().xlen("s") == 1, "the XADD to reach the broker")
    types = [r["type"] for r in history.records() if r["process"] == "producer"]
    assert types == ["invoke", "info"]
    c.close()


def test_upstream_hold_partition_delivers_the_bytes_at_heal(proxy, broker):
    """Held bytes are delivered when the partition heals: the write lands late, not never."""
    c = _direct_and_proxied(proxy, timeout=60.0)
    c.ping()
    part = faults.partition(direction="upstream", mode="hold")
    sender = threading.Thread(target=c.xadd, args=("s", {"id": "e1"}))
    sender.start()
    try:
        _eventually(lambda: proxy.status()["holding"]["upstream"] == 1, "the XADD to be held")
        assert broker.client().xlen("s") == 0  # held in the proxy: not there yet
        part.undo()
    finally:
        part.undo()
        sender.join(timeout=60)
    assert not sender.is_alive()
    assert broker.client().xlen("s") == 1  # delivered at heal (the reply came back)
    assert proxy.status()["holding"]["upstream"] == 0
    c.close()


def test_drop_partition_loses_the_bytes_and_resets_the_connection_at_heal(proxy, broker):
    """Dropped bytes never arrive; after heal the broken connection is reset and a new one works."""
    c = _connected(_direct_and_proxied(proxy, timeout=0.3))
    with faults.partition(direction="upstream", mode="drop"), pytest.raises(redis.TimeoutError):
        c.xadd("s", {"id": "e1"})
    assert broker.client().xlen("s") == 0
    assert c.ping()  # redis-py reconnects after the timeout
    c.close()


def test_reset_breaks_a_command_in_flight(proxy, broker):
    """reset() aborts every open connection: a blocked XREAD fails with ConnectionError."""
    c = proxy.client(retry=NO_RETRY, socket_timeout=60.0, client_name="reset-victim")
    c.ping()
    assert proxy.status()["connections"] == 1
    direct = broker.client()

    def reset_once_blocked() -> None:
        # reset only once the broker shows the XREAD blocked, so the reset
        # hits a command in flight however slowly this machine runs
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            clients = direct.client_list()
            if any(x["name"] == "reset-victim" and "b" in x["flags"] for x in clients):
                faults.reset()
                return
            time.sleep(0.01)

    resetter = threading.Thread(target=reset_once_blocked)
    resetter.start()
    try:
        with pytest.raises(redis.ConnectionError):  # (returns None after 30 s if never blocked)
            c.xread({"s": "$"}, block=30_000)
    finally:
        resetter.join()
    assert proxy.status()["resets_total"] == 1
    assert c.ping()  # the pool opens a new connection
    c.close()


def test_heal_clears_every_fault_in_both_directions(proxy):
    """heal() turns off latency, bandwidth and partitions everywhere."""
    proxy.latency(0.3, direction="both")
    proxy.bandwidth(10, direction="upstream")
    proxy.partition(direction="downstream")
    faults.heal()
    for state in proxy.status()["directions"].values():
        assert state == {"latency": 0.0, "jitter": 0.0, "bandwidth": None, "partition": None}
    assert _rtt(_direct_and_proxied(proxy)) < 0.15


def test_proxy_binds_loopback_only(proxy):
    """Both the proxy and its control channel listen on 127.0.0.1."""
    assert proxy.url.startswith("redis://127.0.0.1:")
    engine = proxy._engine
    for server in (engine.server, engine.control):
        assert {s.getsockname()[0] for s in server.sockets} == {"127.0.0.1"}


def test_no_current_proxy_names_the_fix():
    """A fault without a running proxy raises FaultError saying to call faults.start()."""
    faults.stop()
    with pytest.raises(faults.FaultError, match=r"faults\.start"):
        faults.latency(0.1)


def test_remote_control_and_cli_steer_a_notebook_proxy(broker, client, tmp_path, capsys):  # noqa: ARG001
    """`eventlab faults latency` in a terminal reaches a proxy running in another thread."""
    proxy = faults.start(broker, state=tmp_path)
    try:
        record = json.loads((tmp_path / "proxy.json").read_text())
        assert record["control_port"] == proxy.control_port
        c = _direct_and_proxied(proxy)
        base = _rtt(c)
        assert cli.main(["faults", "latency", "0.2", "--state", str(tmp_path), "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert status["directions"]["downstream"]["latency"] == 0.2
        assert _rtt(c, n=4) - base == pytest.approx(0.2, rel=0.2)
        assert cli.main(["faults", "heal", "--control", str(proxy.control_port)]) == 0
        assert _rtt(c) < 0.15  # far below the 0.2 s it had (a loaded machine adds a little)
        c.close()
    finally:
        faults.stop()
    assert cli.main(["faults", "status", "--control", str(proxy.control_port)]) == 2
    assert "no fault proxy answers" in capsys.readouterr().err


def test_faults_serve_runs_a_proxy_process_the_cli_controls(broker, client, tmp_path, capsys):  # noqa: ARG001
    """`eventlab faults serve` is a real process; `eventlab faults partition/heal` steer it."""
    exe = [sys.executable, "-m", "eventlab.cli"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    server = subprocess.Popen(
        [*exe, "faults", "serve", "--upstream", broker.url, "--state", str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = server.stdout.readline()
        url = json.loads(line)["url"]
        c = _connected(redis.Redis.from_url(url, retry=NO_RETRY, socket_timeout=0.3))
        # the control commands run here; they reach the server process over TCP
        state = ["--state", str(tmp_path)]
        assert cli.main(["faults", "partition", "--direction", "upstream", *state]) == 0
        with pytest.raises(redis.TimeoutError):
            c.set("k", "v")
        capsys.readouterr()
        assert cli.main(["faults", "heal", *state, "--json"]) == 0
        status = json.loads(capsys.readouterr().out)
        assert status["directions"]["upstream"]["partition"] is None
        assert status["connections_total"] >= 1
        c.close()
    finally:
        server.send_signal(signal.SIGINT)  # Ctrl-C: the proxy stops and forgets its record
        assert server.wait(timeout=10) == 0
        server.stdout.close()
    assert not (tmp_path / "proxy.json").exists()


def test_faults_serve_and_status_never_print_the_upstream_password(fresh_broker, tmp_path, capsys):
    """`eventlab faults serve` prints, records and reports URLs with the password redacted."""
    b = fresh_broker()
    admin = b.client()
    admin.config_set("requirepass", "s3cret")
    authed = b.client(password="s3cret")  # noqa: S106 - a throwaway test password
    upstream = f"redis://:s3cret@127.0.0.1:{b.port}"
    cmd = [sys.executable, "-m", "eventlab.cli", "faults", "serve"]
    server = subprocess.Popen(
        [*cmd, "--upstream", upstream, "--state", str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        line = server.stdout.readline()
        printed = json.loads(line)
        assert "s3cret" not in line
        assert printed["url"] == f"redis://:***@127.0.0.1:{printed['port']}"
        assert "s3cret" not in (tmp_path / "proxy.json").read_text()
        # the proxy still forwards the client's AUTH: the password works through it
        c = redis.Redis(port=printed["port"], password="s3cret", socket_timeout=5.0)  # noqa: S106
        assert c.ping()
        c.close()
        capsys.readouterr()
        assert cli.main(["faults", "status", "--state", str(tmp_path)]) == 0
        assert cli.main(["faults", "latency", "0", "--state", str(tmp_path)]) == 0
        out = capsys.readouterr()
        assert "s3cret" not in out.out + out.err
        assert f"127.0.0.1:{b.port}" in out.out  # the status names the upstream, without secrets
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=10) == 0
        rest = server.stdout.read() + server.stderr.read()
        server.stdout.close()
        server.stderr.close()
        authed.config_set("requirepass", "")  # so the fixture can stop it as usual
    assert "s3cret" not in rest


def test_cli_unpartition_and_bandwidth_zero(proxy, capsys):
    """`eventlab faults unpartition --direction` lifts one cut; `bandwidth 0` lifts the limit."""
    control = ["--control", str(proxy.control_port), "--json"]
    assert cli.main(["faults", "partition", *control]) == 0
    assert cli.main(["faults", "bandwidth", "1000", "--direction", "upstream", *control]) == 0
    capsys.readouterr()
    assert cli.main(["faults", "unpartition", "--direction", "downstream", *control]) == 0
    directions = json.loads(capsys.readouterr().out)["directions"]
    assert directions["downstream"]["partition"] is None
    assert directions["upstream"]["partition"] == "hold"
    assert cli.main(["faults", "bandwidth", "0", "--direction", "upstream", *control]) == 0
    directions = json.loads(capsys.readouterr().out)["directions"]
    assert directions["upstream"]["bandwidth"] is None
    assert directions["upstream"]["partition"] == "hold"  # bandwidth 0 touches nothing else
    assert cli.main(["faults", "unpartition", *control]) == 0
    directions = json.loads(capsys.readouterr().out)["directions"]
    assert all(d["partition"] is None for d in directions.values())


def test_jitter_repeats_per_seed_whatever_the_interleaving(broker, client):  # noqa: ARG001
    """Two proxies with one seed draw the same delays per connection, whatever the interleaving."""
    draws = []
    for order in ([0, 1] * 6, [1] * 6 + [0] * 6):  # interleaved, then one connection at a time
        with faults.Proxy(broker.url, seed=11) as proxy:
            proxy.latency(0.002, jitter=0.002, direction="both")
            conns = [proxy.client(retry=NO_RETRY, socket_timeout=5.0) for _ in range(2)]
            for c in conns:
                c.ping()  # connect in a fixed order: connection 1, then 2
            for i in order:
                conns[i].ping()
            # a ping returns after both its chunks drew their delays: read them now
            by_index = sorted(proxy._engine.conns, key=lambda conn: conn.index)
            draws.append([{d: list(conn.delays[d]) for d in conn.delays} for conn in by_index])
            for c in conns:
                c.close()
    first, second = draws
    assert len(first) == 2
    assert all(len(d["upstream"]) >= 7 for d in first)  # every ping drew a delay
    assert first == second
    assert first[0]["upstream"] != first[1]["upstream"]  # each connection has its own stream


# -- broker, consumer and message faults ---------------------------------------------


def test_pause_broker_freezes_it_and_undo_resumes(fresh_broker):
    """pause_broker: no reply while paused; undo() resumes; the history has the window."""
    b = fresh_broker()
    history = History()
    applied = faults.pause_broker(b, 5.0, history=history)
    assert not b.ping(timeout=0.2)
    applied.undo()
    assert b.ping()
    windows = history.fault_windows()
    assert list(windows["fault"]) == ["pause"]


def test_kill_and_restart_broker_under_no_persistence_loses_data(fresh_broker):
    """kill_broker then undo (restart) under persistence none: the stream is gone."""
    b = fresh_broker(persistence="none")
    b.client().xadd("s", {"a": "1"})
    history = History()
    faults.kill_broker(b, history=history).undo()
    assert b.client().xlen("s") == 0
    faults.restart_broker(b, persistence="aof-always", history=history)
    assert list(history.fault_windows()["fault"]) == ["kill", "restart"]


def test_slow_wraps_sync_and_async_handlers():
    """slow() delays every n-th call of a sync or async handler and keeps its result."""
    calls = []

    def handler(x):
        calls.append(x)
        return x * 2

    wrapped = faults.slow(handler, seconds=0.05, every=2)
    started = time.perf_counter()
    assert [wrapped(i) for i in range(4)] == [0, 2, 4, 6]
    assert time.perf_counter() - started >= 0.1

    async def ahandler(x):
        return x + 1

    assert asyncio.run(faults.slow(ahandler, seconds=0.01)(1)) == 2


def _events(n=50):
    return [Event(type="T", source="s", subject=f"a{i % 5}", data={"n": i}) for i in range(n)]


def test_duplicate_burst_repeats_ids_and_is_seeded():
    """duplicate_burst repeats a seeded fraction of events with the same ids."""
    events = _events(200)
    first = faults.duplicate_burst(events, fraction=0.2, seed=3)
    again = faults.duplicate_burst(events, fraction=0.2, seed=3)
    assert [e.id for e in first] == [e.id for e in again]
    extra = len(first) - len(events)
    assert 20 <= extra <= 60
    assert len({e.id for e in first}) == len(events)


def test_out_of_order_shuffles_within_windows_and_is_seeded():
    """out_of_order keeps every event, changes their order, and repeats with a seed."""
    events = _events(50)
    shuffled = faults.out_of_order(events, window=5, seed=1)
    assert sorted(e.id for e in shuffled) == sorted(e.id for e in events)
    assert [e.id for e in shuffled] != [e.id for e in events]
    assert [e.id for e in shuffled] == [e.id for e in faults.out_of_order(events, window=5, seed=1)]
    assert {e.id for e in shuffled[:5]} == {e.id for e in events[:5]}


def test_poison_and_schema_invalid_payloads(client):
    """A poison event is valid but marked; an invalid payload fails to decode with a reason."""
    poison = faults.poison_event(subject="order-1")
    assert Event.from_fields(poison.to_fields()).data == {"poison": True}
    history = History()
    entry = faults.publish_invalid(client, "s", kind="not-json", history=history)
    fields = client.xrange("s")[0][1]
    assert client.xrange("s")[0][0] == entry
    with pytest.raises(EnvelopeError) as err:
        Event.from_fields(fields)
    assert "data" in err.value.problems
    with pytest.raises(EnvelopeError):
        Event.from_fields(faults.invalid_fields(kind="missing-type"))
    assert list(history.fault_windows()["fault"]) == ["schema-invalid"]


# -- nemesis ------------------------------------------------------------------------


def test_schedule_is_seeded_and_has_every_phase():
    """The same seed gives the same faults at the same offsets; phases are in order."""
    a = faults.schedule(seed=5, faults=["partition", "latency", "pause"], cycles=4)
    b = faults.schedule(seed=5, faults=["partition", "latency", "pause"], cycles=4)
    c = faults.schedule(seed=6, faults=["partition", "latency", "pause"], cycles=4)
    assert a == b
    assert a.steps != c.steps
    names = [p.name for p in a.phases]
    assert names == [
        "warm-up",
        "fault",
        "fault",
        "fault",
        "fault",
        "heal",
        "quiesce",
        "final-reads",
    ]
    starts = [p.start for p in a.phases]
    assert starts == sorted(starts)


def test_nemesis_runs_the_schedule_and_records_windows():
    """Nemesis starts and stops each fault on time and records the windows in the history."""
    plan = faults.schedule(
        seed=1, faults=["a", "b"], cycles=2, warmup=0.05, fault_seconds=(0.05, 0.1), quiesce=0.05
    )
    log: list[str] = []

    def action(name):
        def run():
            log.append(f"start {name}")
            return lambda: log.append(f"stop {name}")

        return run

    history = History()
    nemesis = faults.Nemesis(plan, {"a": action("a"), "b": action("b")}, history=history)
    started = time.perf_counter()
    nemesis.start().join(timeout=30)
    assert time.perf_counter() - started >= plan.duration * 0.9
    expected = [f"{s.phase} {s.fault}" for s in plan.steps]
    assert log == expected
    windows = history.fault_windows()
    assert list(windows["fault"]) == [p.fault for p in plan.phases if p.name == "fault"]
    assert (windows["end"] > windows["start"]).all()


def test_nemesis_needs_an_action_per_fault():
    """A schedule naming a fault with no action is refused before it runs."""
    plan = faults.schedule(seed=1, faults=["partition"])
    with pytest.raises(faults.FaultError, match="partition"):
        faults.Nemesis(plan, {}, history=History())


def test_fault_vocabulary_is_documented():
    """Every fault name in FAULTS has a section in docs/faults.md."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "faults.md").read_text()
    for name in faults.FAULTS:
        assert f"`{name}`" in doc, name


def test_cli_pauses_kills_and_restarts_the_managed_broker(fresh_broker, capsys):
    """`eventlab faults pause/kill-broker/restart` act on the managed broker of a state folder."""
    b = fresh_broker(persistence="aof-always")
    state = ["--state", str(b.state)]
    b.client().set("k", "v")
    assert cli.main(["faults", "pause", "0.2", *state]) == 0
    assert b.ping()
    assert cli.main(["faults", "kill-broker", *state]) == 0
    assert not b.ping(timeout=0.2)
    assert cli.main(["faults", "restart", "--persistence", "aof-always", *state]) == 0
    restarted = broker_mod.up(state=b.state)
    assert restarted.client().get("k") == "v"  # aof-always kept the write across kill -9
    assert "restarted (aof-always)" in capsys.readouterr().out


@pytest.mark.slow  # ~5-10 s of chaos: `make test` runs it, `make check` does not
def test_hold_partition_stops_a_reply_already_in_flight_under_latency(proxy, broker):
    """A reply sitting out its latency when a hold partition starts waits for the heal."""
    proxy.latency(1.5, direction="downstream")
    c = proxy.client(retry=NO_RETRY, socket_timeout=60.0)
    c.ping()
    sender = threading.Thread(target=c.xadd, args=("s", {"id": "e1"}))
    sender.start()
    try:
        # the XADD is applied at once; its reply now waits 1.5 s in the proxy
        _eventually(lambda: broker.client().xlen("s") == 1, "the XADD to reach the broker")
        faults.partition(direction="both", mode="hold")
        sender.join(timeout=3.0)  # twice the latency: the old proxy delivered it by now
        assert sender.is_alive(), "a reply crossed a hold partition"
        assert proxy.status()["holding"]["downstream"] == 1
    finally:
        faults.heal()
        sender.join(timeout=60)
    assert not sender.is_alive()  # delivered at heal
    c.close()


@pytest.mark.slow  # ~5-10 s of chaos: `make test` runs it, `make check` does not
def test_hold_partition_stops_a_request_already_in_flight_under_latency(proxy, broker):
    """A request sitting out its latency when a hold partition starts never reaches the broker."""
    proxy.latency(1.5, direction="upstream")
    c = proxy.client(retry=NO_RETRY, socket_timeout=60.0)
    c.ping()
    sender = threading.Thread(target=c.xadd, args=("s", {"id": "e1"}))
    sender.start()
    try:
        time.sleep(0.2)  # the request is in the proxy, waiting out its 1.5 s
        faults.partition(direction="both", mode="hold")
        time.sleep(3.0)
        assert broker.client().xlen("s") == 0, "a request crossed a hold partition"
    finally:
        faults.heal()
        sender.join(timeout=60)
    assert broker.client().xlen("s") == 1  # delivered at heal
    c.close()


def test_stop_removes_proxy_json_so_status_says_no_proxy(broker, client, tmp_path, capsys):  # noqa: ARG001
    """faults.stop() removes the proxy.json it wrote; `eventlab faults status` then exits 0."""
    faults.start(broker, state=tmp_path)
    assert (tmp_path / "proxy.json").exists()
    assert cli.main(["faults", "status", "--state", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["connections"] == 0
    faults.stop()
    assert not (tmp_path / "proxy.json").exists()
    assert cli.main(["faults", "status", "--state", str(tmp_path), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["running"] is False
    assert cli.main(["faults", "status", "--state", str(tmp_path)]) == 0
    assert "no fault proxy is running" in capsys.readouterr().out
