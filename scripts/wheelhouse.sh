#!/usr/bin/env bash
# Build a wheelhouse for the Docker lab image, so `docker build` installs the kit
# without reaching a package index (an offline room, a slow link, a mirror only
# the host can reach). The wheels are built HERE, on the host, with the host's
# own pip configuration, at exactly the versions pinned in constraints.txt, for
# the lab image's platform (CPython 3.11 on x86-64 Linux).
#
#   scripts/wheelhouse.sh                  # into docker/wheelhouse/ (gitignored)
#   scripts/wheelhouse.sh /some/cache/dir  # anywhere else
#   docker compose -f docker/compose.yaml build
#
# docker/Dockerfile installs only from docker/wheelhouse/ (pip --no-index) when
# it holds any wheel; empty, the build uses the index as before.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$root/docker/wheelhouse}"
python="${PYTHON:-$root/.venv/bin/python}"
[ -x "$python" ] || python=python3
mkdir -p "$out"
reqs="$(mktemp)"
trap 'rm -f "$reqs"' EXIT
# The same list the Dockerfile installs (pyproject's dependencies and the dev
# extra), plus the build backend `pip install -e .` needs (hatchling, and
# editables for an editable install).
"$python" - "$root/pyproject.toml" >"$reqs" <<'PY'
import sys, tomllib
with open(sys.argv[1], "rb") as f:
    data = tomllib.load(f)
project = data["project"]
for req in project["dependencies"] + project["optional-dependencies"]["dev"]:
    print(req)
for req in data["build-system"]["requires"]:
    print(req)
print("editables")
PY
# `pip wheel` resolves for the Python running it, so run it with a CPython 3.11
# on x86-64 Linux (the project's .venv on the machines the course is tested on,
# like the image); a dependency published only as an sdist is built into a wheel.
"$python" - <<'PY'
import platform, sys
if sys.version_info[:2] != (3, 11) or platform.machine() != "x86_64" or sys.platform != "linux":
    sys.exit("wheelhouse: run with CPython 3.11 on x86-64 Linux (PYTHON=...), like the lab image")
PY
"$python" -m pip wheel --quiet --disable-pip-version-check \
  --wheel-dir "$out" -c "$root/constraints.txt" -r "$reqs"
# Dependencies can differ by patch release (redis needs async-timeout before
# 3.11.3), so also add the wheels for the pinned official image's Python.
# Everything built above is found again in "$out"; the rest must be a wheel.
for version in ${WHEELHOUSE_PYTHONS:-3.11.14}; do
  "$python" -m pip download --quiet --disable-pip-version-check \
    --dest "$out" --find-links "$out" --only-binary=:all: \
    --python-version "$version" --implementation cp --abi cp311 --abi abi3 --abi none \
    --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64 \
    --platform linux_x86_64 --platform any \
    -c "$root/constraints.txt" -r "$reqs"
done
echo "wheelhouse: $(find "$out" -name '*.whl' | wc -l) wheels in $out"
