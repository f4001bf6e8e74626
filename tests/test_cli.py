"""eventlab command: up/status/down round trip, JSON output, one-line errors with exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import redis

from eventlab import cli, doctor


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "eventlab.cli", *args],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


def test_up_status_down_round_trip(tmp_path):
    """`up --json` reports url/version/managed, `status` lists groups, `down` stops the server."""
    up = _run("--state", str(tmp_path), "up", "--json")
    assert up.returncode == 0, up.stderr
    info = json.loads(up.stdout)
    assert info["managed"] is True
    assert info["url"].startswith("redis://127.0.0.1:")
    assert int(info["version"].split(".")[0]) >= 7
    again = json.loads(_run("--state", str(tmp_path), "up", "--json").stdout)
    assert again["pid"] == info["pid"], "up is idempotent"
    c = redis.Redis.from_url(info["url"], decode_responses=True)
    c.xadd("{lab:orders}", {"k": "v"})
    c.xgroup_create("{lab:orders}", "billing", id="0")
    c.close()
    status = _run("--state", str(tmp_path), "status")
    assert status.returncode == 0, status.stderr
    assert "{lab:orders}" in status.stdout
    assert "billing" in status.stdout
    as_json = json.loads(_run("--state", str(tmp_path), "status", "--json").stdout)
    assert as_json["groups"][0]["lag"] == 1
    down = _run("--state", str(tmp_path), "down")
    assert down.returncode == 0
    assert "stopped" in down.stdout
    assert not (tmp_path / "broker.json").exists()


def test_unreachable_redis_url_is_one_line_exit_2():
    """An unreachable REDIS_URL: exit 2, one stderr line naming the fix, password hidden."""
    result = _run("up", env={"REDIS_URL": "redis://:topsecret@127.0.0.1:1/0"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "fix:" in lines[0]
    assert "topsecret" not in result.stderr


def test_no_server_anywhere_exit_2(tmp_path):
    """No server binary at all: exit 2 with the install command."""
    result = _run(
        "--state", str(tmp_path), "up", env={"EVENTLAB_SERVER": "/nonexistent/redis-server"}
    )
    assert result.returncode == 2
    assert "EVENTLAB_SERVER" in result.stderr


def test_doctor_reports_ok_for_each_dependency(tmp_path, capsys):
    """Doctor prints [OK] for every package and the broker, and exits 0."""
    assert cli.main(["--state", str(tmp_path), "doctor"]) == 0
    out = capsys.readouterr().out
    for dist, _ in doctor.PACKAGES:
        assert f"[OK] {dist} " in out
    assert "[OK] broker" in out
    assert cli.main(["--state", str(tmp_path), "down"]) == 0


def test_doctor_fail_line_has_a_fix(monkeypatch):
    """An unreachable broker is a [FAIL] line with a fix, and doctor exits 1."""
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    checks = doctor.run()
    broker_check = next(c for c in checks if c.name == "broker")
    assert not broker_check.ok
    assert broker_check.line().startswith("[FAIL] broker:")
    assert "fix:" in broker_check.line()
    assert cli.main(["doctor"]) == 1


def test_doctor_warns_when_a_broker_is_exposed_without_a_password():
    """A non-loopback REDIS_URL without a password earns a [WARN] with a fix."""
    warning = doctor._exposed_without_auth("redis://8.8.8.8:6379/0")
    assert warning is not None
    assert warning.line().startswith("[WARN]")
    assert doctor._exposed_without_auth("redis://:pw@8.8.8.8:6379/0") is None
    assert doctor._exposed_without_auth("redis://127.0.0.1:6379/0") is None


def test_status_without_a_broker_does_not_start_one(tmp_path):
    """`eventlab status` with nothing running says so (exit 2) and starts nothing."""
    result = _run("--state", str(tmp_path), "status")
    assert result.returncode == 2
    assert "eventlab up" in result.stderr
    assert not (tmp_path / "broker.json").exists()


def test_malformed_workshop_url_is_one_line_exit_2(tmp_path):
    """A malformed EVENTLAB_WORKSHOP_URL: `workshop status` exits 2 with one line, no traceback."""
    result = _run(
        "--state",
        str(tmp_path),
        "workshop",
        "status",
        env={"EVENTLAB_WORKSHOP_URL": "redis://:hunter2@127.0.0.1:99999/0"},
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "EVENTLAB_WORKSHOP_URL" in lines[0]
    assert "fix:" in lines[0]
    assert "hunter2" not in result.stderr


def test_malformed_redis_url_in_the_cli_is_one_line_exit_2():
    """`eventlab up` with REDIS_URL on a bad port: exit 2, one line, password hidden."""
    result = _run("up", env={"REDIS_URL": "redis://:hunter2@127.0.0.1:99999/0?password=x"})
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "hunter2" not in result.stderr
    assert "password=x" not in result.stderr


def test_passwords_in_the_url_query_are_never_printed(fresh_broker):
    """`up`, `status` and `doctor` on a broker whose REDIS_URL has ?password= never print it."""
    handle = fresh_broker()
    client = handle.client()
    client.config_set("requirepass", "hunter2pw")
    client.close()
    url = f"redis://127.0.0.1:{handle.port}/0?password=hunter2pw"
    try:
        for command in (["up"], ["status"], ["status", "--json"], ["doctor"]):
            result = _run(*command, env={"REDIS_URL": url})
            assert "hunter2pw" not in result.stdout + result.stderr, command
            assert "password=***" in result.stdout, (command, result.stdout, result.stderr)
    finally:
        admin = redis.Redis(port=handle.port, password="hunter2pw")  # noqa: S106 - test server
        admin.config_set("requirepass", "")
        admin.close()
