"""binder/: the start script really starts a broker and execs; the build files are sound.

mybinder.org cannot be reached from here, so ``binder/start`` is run as repo2docker
runs it (Jupyter's command line as arguments) with a stub command in Jupyter's
place, on the Debian ``redis-server`` found on PATH as conda-forge's would be.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import redis
import yaml
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from eventlab import broker as broker_mod

ROOT = Path(__file__).resolve().parent.parent
BINDER = ROOT / "binder"
VENV_BIN = str(Path(sys.executable).parent)

# Stands in for Jupyter: reports its pid and argv, and PINGs the broker start recorded.
STUB = """
import json, os, sys
from pathlib import Path
import redis
state = Path(os.environ["EVENTLAB_STATE"])
record = json.loads((state / "broker.json").read_text())
client = redis.Redis.from_url(record["url"], decode_responses=True)
print(json.dumps({
    "pid": os.getpid(),
    "argv": sys.argv[1:],
    "pong": client.ping(),
    "bind": client.config_get("bind")["bind"],
    "appendonly": client.config_get("appendonly")["appendonly"],
    "record": record,
}))
"""


def _env(state: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EVENTLAB_", "REDIS_URL"))}
    env["PATH"] = f"{VENV_BIN}:/usr/local/bin:/usr/bin:/bin"
    env["EVENTLAB_STATE"] = str(state)
    env.update(extra)
    return env


@pytest.fixture
def state(tmp_path: Path):
    """A state folder for the broker that start launches; stopped afterwards."""
    folder = tmp_path / "state"
    yield folder
    broker_mod.down(state=folder)


def test_start_launches_a_loopback_broker_then_execs_the_command(state):
    """Start runs a managed redis-server on 127.0.0.1 from PATH, then becomes the command."""
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        pytest.skip("no redis-server on PATH (apt-get install redis-server)")
    proc = subprocess.Popen(
        ["bash", str(BINDER / "start"), sys.executable, "-c", STUB, "two words", "--flag"],
        env=_env(state),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    lines = out.strip().splitlines()
    assert lines[0].startswith("broker up: redis://127.0.0.1:")
    report = json.loads(lines[-1])
    assert report["pid"] == proc.pid, "start must exec the command, not run it as a child"
    assert report["argv"] == ["two words", "--flag"]
    assert report["pong"] is True
    assert report["bind"].split()[0] == "127.0.0.1"
    assert report["appendonly"] == "yes"
    assert report["record"]["origin"] == "PATH"
    assert Path(report["record"]["binary"]).resolve() == Path(redis_server).resolve()
    # The broker outlives start (it runs in the background for the whole session).
    client = redis.Redis.from_url(report["record"]["url"], retry=broker_mod._NO_RETRY)
    try:
        assert client.ping()
    finally:
        client.close()


def test_start_still_execs_when_the_broker_cannot_start(state):
    """A missing server binary is reported, and Jupyter starts anyway (lesson 00 shows the fix)."""
    proc = subprocess.run(
        ["bash", str(BINDER / "start"), sys.executable, "-c", "print('jupyter here')"],
        env=_env(state, EVENTLAB_SERVER="/nonexistent/redis-server"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0
    assert proc.stdout.strip() == "jupyter here"
    assert "broker did not start" in proc.stderr
    assert "not found" in (state / "start.log").read_text()


def test_start_and_postbuild_are_executable_strict_bash():
    """Both scripts are executable bash that parses; postBuild stops on the first error."""
    for name in ("start", "postBuild"):
        path = BINDER / name
        assert os.access(path, os.X_OK), f"binder/{name} is not executable"
        assert path.read_text().startswith("#!/bin/bash\n")
        subprocess.run(["bash", "-n", str(path)], check=True)
    post = (BINDER / "postBuild").read_text()
    assert re.search(r"^set -e", post, flags=re.MULTILINE)
    assert re.search(r'^exec "\$@"$', (BINDER / "start").read_text(), flags=re.MULTILINE)


def test_postbuild_installs_the_kit_at_the_pinned_versions():
    """The postBuild script installs the kit with -c constraints.txt, checks the broker binary."""
    post = (BINDER / "postBuild").read_text()
    installs = [line for line in post.splitlines() if "pip install" in line]
    assert installs == ["python -m pip install --no-cache-dir -c constraints.txt -e . notebook"]
    assert "pip check" in post
    assert "broker.find_server()" in post


def test_binder_environment_has_python_pip_and_redis_server():
    """Conda-forge's redis-server pinned to an exact 7.4+ patch; a Python pyproject accepts."""
    env = yaml.safe_load((BINDER / "environment.yml").read_text())
    assert env["channels"] == ["conda-forge"]
    deps = env["dependencies"]
    assert all(isinstance(d, str) for d in deps), "the kit is installed by postBuild"
    [python] = [d for d in deps if d.startswith("python")]
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert python.removeprefix("python=") in SpecifierSet(requires)
    [server] = [d for d in deps if d.startswith("redis-server")]
    match = re.fullmatch(r"redis-server==(\d+)\.(\d+)\.(\d+)", server)
    assert match, f"pin an exact patch release (redis-server==X.Y.Z), not {server!r}"
    assert (int(match[1]), int(match[2])) >= (7, 4)
    assert "pip" in deps


def test_readme_has_a_binder_badge_for_this_repository():
    """The README's badge launches this repository on mybinder.org, opening the course map."""
    readme = (ROOT / "README.md").read_text()
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]
    repo = re.search(r"github\.com/([^/]+/[^/]+)", urls["Documentation"])
    assert repo
    badge = re.search(
        r"\[!\[Binder\]\(https://mybinder\.org/badge_logo\.svg\)\]\((https://mybinder\.org/v2/gh/[^)]+)\)",
        readme,
    )
    assert badge, "README.md has no Binder badge"
    assert badge[1].startswith(f"https://mybinder.org/v2/gh/{repo[1]}/HEAD")
    assert "urlpath=lab/tree/notebooks/index.ipynb" in badge[1]


def test_every_package_postbuild_names_is_pinned_in_constraints():
    """Versions come from constraints.txt only: postBuild names packages, never its own pin."""
    post = (BINDER / "postBuild").read_text()
    [install] = [line for line in post.splitlines() if "pip install" in line]
    words = shlex.split(install)
    packages = [w for w in words[words.index("install") + 1 :] if not w.startswith("-")]
    packages = [w for w in packages if w not in {"constraints.txt", "."}]
    assert packages == ["notebook"]
    assert not [w for w in words if re.search(r"[=<>~!]=|[<>]", w)], install
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    for package in packages:
        assert canonicalize_name(package) in pins, f"{package} has no pin in constraints.txt"
