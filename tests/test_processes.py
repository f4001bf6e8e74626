"""eventlab.processes: real child processes that can be killed, stopped and waited for."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from eventlab import processes


def sleeper(seconds: str) -> None:
    """Child target: say ready, then sleep."""
    processes.signal_ready()
    time.sleep(float(seconds))


async def async_child(value: str) -> int:
    """Child target: an async function whose int result is the exit status."""
    processes.signal_ready()
    return int(value)


def crasher() -> None:
    """Child target: fail before becoming ready."""
    raise RuntimeError("boom at start")


def graceful() -> None:
    """Child target: exit 3 on SIGTERM."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))
    processes.signal_ready()
    time.sleep(30)


def echo_url(url: str, out: str) -> None:
    """Child target: write the URL it was given to a file, then wait."""
    Path(out).write_text(url)
    processes.signal_ready()
    time.sleep(30)


def test_broker_urls_never_reach_the_command_line(tmp_path):
    """A URL argument (password included) travels in the environment, not /proc/PID/cmdline."""
    url = "redis://:hunter2@127.0.0.1:6399/0"
    out = tmp_path / "url.txt"
    proc = processes.spawn("tests.test_processes:echo_url", args=[url, str(out)])
    try:
        proc.wait_ready(timeout=30)
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert b"hunter2" not in cmdline
        assert b"redis://" not in cmdline
        assert out.read_text() == url  # the function still gets the URL itself
    finally:
        proc.kill()


def test_spawned_function_runs_in_another_process():
    """spawn() runs module:function in a child with its own pid, and wait_ready() sees it."""
    proc = processes.spawn("tests.test_processes:sleeper", args=["30"])
    proc.wait_ready(timeout=10)
    assert proc.alive
    assert proc.pid != os.getpid()
    proc.kill()
    assert not proc.alive
    assert proc.returncode == -signal.SIGKILL


def test_async_target_exit_status():
    """An async target is awaited and its int result becomes the exit status."""
    proc = processes.spawn("tests.test_processes:async_child", args=["7"])
    assert proc.wait(timeout=20) == 7


def test_crash_before_ready_is_reported_with_the_log():
    """A child that dies before it is ready raises ProcessError quoting its last log line."""
    proc = processes.spawn("tests.test_processes:crasher")
    with pytest.raises(processes.ProcessError, match="boom at start"):
        proc.wait_ready(timeout=20)


def test_terminate_is_graceful():
    """terminate() sends SIGTERM first, so the child's handler runs."""
    proc = processes.spawn("tests.test_processes:graceful")
    proc.wait_ready(timeout=10)
    assert proc.terminate(timeout=5) == 3


_PARENT = """
import sys, time
from eventlab import processes
p = processes.spawn("tests.test_processes:sleeper", args=["60"])
p.wait_ready(timeout=10)
print(p.pid, flush=True)
time.sleep(60)
"""


@pytest.mark.slow  # kills a process: `make test` runs it, `make check` does not
def test_child_dies_with_its_parent():
    """SIGKILL of the parent takes the child with it: no orphan consumers."""
    parent = subprocess.Popen([sys.executable, "-c", _PARENT], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    parent.kill()
    parent.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.02)
    else:
        pytest.fail("child outlived its parent")


def test_bad_target_is_refused():
    """A target without ':function' is a ValueError naming the expected form."""
    with pytest.raises(ValueError, match=r"package\.module:function"):
        processes.spawn("eventlab.processes")
