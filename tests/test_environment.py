"""environment.yml for conda users lists what pyproject.toml lists, pinned by constraints.txt."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def _env() -> dict:
    return yaml.safe_load((ROOT / "environment.yml").read_text())


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def _pip_lines() -> list[str]:
    [pip] = [d["pip"] for d in _env()["dependencies"] if isinstance(d, dict)]
    return [str(line) for line in pip]


def _key(spec: str) -> tuple[str, frozenset[str], SpecifierSet]:
    req = Requirement(spec)
    return canonicalize_name(req.name), frozenset(req.extras), req.specifier


def test_pip_dependencies_equal_pyprojects():
    """Same names, extras and version ranges as [project] dependencies, nothing more or less."""
    listed = [_key(line) for line in _pip_lines() if not line.startswith("-")]
    expected = [_key(spec) for spec in _project()["dependencies"]]
    assert sorted(listed, key=str) == sorted(expected, key=str)
    assert len(listed) == len(set(listed)), "a dependency is listed twice"


def test_pip_installs_the_kit_with_the_pinned_constraints():
    """Pip reads constraints.txt (exact versions) and installs the kit itself from the checkout."""
    lines = _pip_lines()
    assert "-c constraints.txt" in lines
    assert "-e ." in lines
    assert lines.index("-c constraints.txt") < lines.index("-e .")
    assert (ROOT / "constraints.txt").is_file()


def test_every_dependency_has_a_pin_that_satisfies_it():
    """constraints.txt fixes each listed dependency at a version its range accepts."""
    pins = {}
    for line in (ROOT / "constraints.txt").read_text().splitlines():
        if "==" in line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    for line in _pip_lines():
        if line.startswith("-"):
            continue
        name, _, spec = _key(line)
        assert name in pins, f"{name} is not pinned in constraints.txt"
        assert spec.contains(pins[name], prereleases=True), (line, pins[name])


def test_conda_provides_python_and_a_real_redis_server():
    """Conda-forge gives a Python pyproject accepts and redis-server 7.4+ for the managed broker."""
    env = _env()
    assert env["channels"] == ["conda-forge"]
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    [python] = [d for d in conda if d.startswith("python")]
    version = re.fullmatch(r"python=(\d+\.\d+)", python)
    assert version
    assert version[1] in SpecifierSet(_project()["requires-python"])
    [server] = [d for d in conda if d.startswith("redis-server")]
    assert SpecifierSet(server.removeprefix("redis-server")).contains("7.4.0")
    assert not SpecifierSet(server.removeprefix("redis-server")).contains("7.2.0")
    assert "pip" in conda
