"""A workshop day played end to end on real servers, following the guide and the README as written.

The room broker is started by the recipe in docs/instructor.md (Redis 7.0); the
instructor gives each learner an ACL user; three learners, each in a checkout of
their own with a JupyterLab kernel already running, join in the README's order
(setup A: lessons run on their own managed brokers); lessons and grades reach the
room; status (text and JSON) shows who is stuck where; a setup-B learner's
lessons 10 and 11 refuse to pause or flush the shared broker; forget and resets
do what they say.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from eventlab import broker as broker_mod

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "instructor.md"
BIN = Path(sys.executable).parent
EVENTLAB = str(BIN / "eventlab")


def _block(marker: str) -> str:
    """The bash code between ``<!-- BEGIN marker -->`` and its END in the guide."""
    text = GUIDE.read_text()
    inner = text.split(f"<!-- BEGIN {marker} -->")[1].split(f"<!-- END {marker} -->")[0]
    return inner.strip().removeprefix("```bash").removesuffix("```").strip()


def _clean_env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("EVENTLAB_") and k not in {"REDIS_URL", "REDISCLI_AUTH"}
    }
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    env.update(extra)
    return env


def _run(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=120, check=False
    )


class Seat:
    """One learner: a checkout folder, its environment, and a kernel started before the join."""

    def __init__(self, name: str, root: Path) -> None:
        """Make the checkout folder and start its kernel (not yet joined)."""
        from jupyter_client.manager import KernelManager  # noqa: PLC0415 - only this test

        self.name = name
        self.home = root / name
        self.home.mkdir()
        self.env = _clean_env(
            EVENTLAB_STATE=str(self.home / ".eventlab"), IPYTHONDIR=str(root / "ipython")
        )
        self.log = (root / f"{name}-kernel.log").open("w")
        self.manager = KernelManager(kernel_name="python3")
        self.manager.start_kernel(
            env=self.env, cwd=str(self.home), stdout=self.log, stderr=self.log
        )
        self.kernel = self.manager.client()
        self.kernel.start_channels()

    def run(self, code: str) -> str:
        """Execute ``code`` in the kernel; return what it printed (fail on an error)."""
        printed: list[str] = []

        def hook(msg: dict) -> None:
            content = msg["content"]
            printed.append(content.get("text", ""))
            if msg["msg_type"] == "error":
                printed.append("\n".join(content["traceback"]))

        reply = self.kernel.execute_interactive(code, timeout=60, output_hook=hook)
        out = "".join(printed)
        assert reply["content"]["status"] == "ok", out
        return out

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``eventlab ARGS`` in this checkout, as the learner's terminal would."""
        return _run([EVENTLAB, *args], self.env, self.home)

    def close(self) -> None:
        """Stop the kernel and the learner's own managed broker."""
        self.kernel.stop_channels()
        if self.manager.has_kernel:
            self.manager.shutdown_kernel(now=True)
        self.log.close()
        broker_mod.down(state=self.home / ".eventlab")


@pytest.fixture
def room(tmp_path: Path) -> Iterator[tuple[Path, str, dict[str, str]]]:
    """The room broker started by the guide's recipe, run as written from an unrelated folder."""
    if shutil.which("redis-server") is None:
        pytest.skip("the recipe's default server, redis-server (Redis 7.0), is not installed")
    folder = tmp_path / "room"
    port = str(broker_mod._free_port(None, wait=0))
    env = _clean_env(ROOM=str(folder), PORT=port, BIND="127.0.0.1", HOME=str(tmp_path))
    script = _block("RECIPE: room") + '\nprintf "%s" "$EVENTLAB_WORKSHOP_URL"'
    done = _run(["bash", "-euc", script], env, tmp_path)  # cwd: not the checkout
    assert done.returncode == 0, done.stderr
    admin_url = done.stdout.strip().splitlines()[-1]
    try:
        yield folder, admin_url, env
    finally:
        pid = (folder / "room.pid").read_text().strip() if (folder / "room.pid").exists() else ""
        if pid:
            os.kill(int(pid), 15)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
                time.sleep(0.05)


def _status(admin: dict[str, str], cwd: Path, *extra: str) -> str:
    done = _run([EVENTLAB, "workshop", "status", *extra], admin, cwd)
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_workshop_day_end_to_end(room, tmp_path):  # noqa: PLR0915 - one day, step by step
    """Recipe room, three learners (kernels first), lessons, grades, status, setup B, resets."""
    folder, admin_url, _ = room
    # The recipe: private from the first byte, state outside the checkout, daemonized, logging.
    assert stat.S_IMODE((folder / "password").stat().st_mode) == 0o600
    assert stat.S_IMODE((folder / "room.conf").stat().st_mode) == 0o600
    assert stat.S_IMODE((folder / "data").stat().st_mode) == 0o700
    assert (folder / "room.log").read_text()
    assert str(ROOT) not in str(folder)
    admin = _clean_env(EVENTLAB_WORKSHOP_URL=admin_url)
    office = tmp_path / "instructor"
    office.mkdir()

    # The guide's seat check, run as written from the instructor's checkout.
    seat_env = {**admin, "EVENTLAB_STATE": str(office / ".eventlab")}
    try:
        check = _run(["bash", "-euc", _block("SEATCHECK")], seat_env, office)
    finally:
        broker_mod.down(state=office / ".eventlab")  # the broker `eventlab doctor` started
    assert check.returncode == 0, check.stdout + check.stderr
    assert "[OK] workshop room redis://test-seat:***@" in check.stdout
    assert "you are 'test-seat'" in check.stdout
    assert re.search(r"test-seat\s+lessons passed 0/0", check.stdout), check.stdout
    assert "forgot 'test-seat'" in check.stdout
    assert "left the workshop" in check.stdout
    assert "test-seat" not in _status(admin, office)  # no permanent row, no joined checkout
    assert not (office / ".eventlab" / "namespace").exists()

    # JupyterLab is already open in every learner's checkout before they join.
    seats = {name: Seat(name, tmp_path) for name in ("alice", "bob", "carol")}
    try:
        for seat in seats.values():
            seat.kernel.wait_for_ready(timeout=60)
            assert seat.run("from eventlab import streams\nprint(streams.namespace())") == "lab\n"

        # The instructor creates one server user per learner; each learner joins with it.
        urls = {}
        for name, seat in seats.items():
            made = _run([EVENTLAB, "workshop", "add", name], admin, office)
            assert made.returncode == 0, made.stderr
            urls[name] = made.stdout.strip()
            assert urls[name].startswith(f"redis://{name}:")
            joined = seat.cli("workshop", "join", name, "--room", urls[name])
            assert joined.returncode == 0, joined.stderr
            assert "redis 7.0" in joined.stdout
            assert urls[name].split("@")[0] not in joined.stdout + joined.stderr

        # Lessons in the kernels started before the join: the room sees them, by name.
        code = 'from eventlab import course\nlesson = course.setup("{id}")\n'
        for name, seat in seats.items():
            out = seat.run(code.format(id="00") + "lesson.done()")
            assert f"workshop: progress recorded as {name!r} on the room redis://{name}:***@" in out
        alice, bob, carol = seats["alice"], seats["bob"], seats["carol"]
        alice.run(
            code.format(id="01")
            + 'lesson.client.xadd(lesson.key("orders"), {"type": "OrderPlaced"})\nlesson.done()'
        )
        carol.run(code.format(id="03"))  # started, never reached the last cell: stuck
        # The guide's lesson 01 demo works on alice's own port and namespace.
        demo = _run(["bash", "-euc", _block("DEMO: 01")], alice.env, alice.home)
        assert demo.returncode == 0, demo.stderr
        assert "OrderPlaced" in demo.stdout

        # Grades: alice's full marks, then an attempt that fails every check.
        for lab in ("solutions", "labs"):
            graded = alice.cli(
                "grade", str(ROOT / lab / "09-projection-rebuild"), "--json",
                "--out", str(alice.home / lab),
            )  # fmt: skip
            assert graded.returncode == 0, graded.stderr
        checks = json.loads(graded.stdout)["checks"]
        failing = [c["name"] for c in checks if not c["passed"] and not c.get("stretch")]

        # The instructor's two views.
        text = _status(admin, office)
        assert "3 learner(s)" in text
        assert re.search(r"alice\s+lessons passed 2/2", text), text
        assert re.search(r"carol\s+lessons passed 1/2 .*started, not passed: 03", text), text
        assert "lab 09-projection-rebuild: best 10/10, latest 0/10, 2 attempt(s)" in text
        assert f"failing: {', '.join(failing)}" in text
        rows = {r["learner"]: r for r in json.loads(_status(admin, office, "--json"))["learners"]}
        assert rows["alice"]["lessons_passed"] == ["00", "01"]
        assert rows["carol"]["lessons_started"] == ["00", "03"]
        assert rows["carol"]["lessons_passed"] == ["00"]
        lab = rows["alice"]["labs"]["09-projection-rebuild"]
        assert (lab["best"], lab["latest"], lab["attempts"]) == (10.0, 0.0, 2)
        assert lab["failing"] == failing
        assert rows["bob"]["last_seen"]
        # A learner's URL is not the instructor's.
        denied = bob.cli("workshop", "status", "--room", urls["bob"])
        assert denied.returncode == 2
        assert "instructor's credentials" in denied.stderr

        # Setup B: the shared broker is REDIS_URL; lessons 10 and 11 refuse to pause or flush it.
        shared = _clean_env(REDIS_URL=admin_url, EVENTLAB_NAMESPACE="dave")
        probe = (
            "from eventlab import broker, faults, scenarios\n"
            "shared = broker.up()\n"
            "for step in (lambda: faults.pause_broker(shared, 5.0),"
            " lambda: scenarios.kill9_rdb_vs_aof(seed=11)):\n"
            "    try:\n"
            "        step()\n"
            "    except Exception as exc:\n"
            "        print(type(exc).__name__, exc)\n"
        )
        refused = _run([sys.executable, "-c", probe], shared, office)
        lines = refused.stdout.strip().splitlines()
        assert len(lines) == 2, refused.stdout + refused.stderr
        assert all("needs a broker that eventlab manages" in line for line in lines)
        client = redis.Redis.from_url(admin_url, socket_timeout=1.0)
        started = time.monotonic()
        assert client.ping()
        assert time.monotonic() - started < 1.0  # never paused
        assert client.exists("eventlab:{workshop}:alice") == 1  # never flushed

        # forget one learner; resets that say what they did; misuse refused.
        forgot = _run([EVENTLAB, "workshop", "forget", "carol"], admin, office)
        assert forgot.returncode == 0, forgot.stderr
        assert "2 learner(s)" in _status(admin, office)
        unknown = _run([EVENTLAB, "workshop", "reset", "--learner", "zed"], admin, office)
        assert unknown.returncode == 2
        assert "no learner 'zed'" in unknown.stderr
        both = _run([EVENTLAB, "workshop", "reset", "--learner", "bob", "--all"], admin, office)
        assert both.returncode == 2
        one = _run([EVENTLAB, "workshop", "reset", "--learner", "alice"], admin, office)
        assert "0 key(s) deleted" in one.stdout
        assert "theirs to reset" in one.stdout  # setup A: her keys are on her own broker
        wiped = _run([EVENTLAB, "workshop", "reset", "--all", "--progress"], admin, office)
        assert "2 progress stream(s) deleted" in wiped.stdout
        assert "0 learner(s)" in _status(admin, office)
        client.close()
    finally:
        for seat in seats.values():
            seat.close()
