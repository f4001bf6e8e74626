#!/usr/bin/env bash
# System packages the tests use beyond pip: Debian's redis-server (so every
# broker test also runs on Redis 7.0, not only the embedded Valkey 8.1) and
# chromium (the browser tests), and Docker for tests/test_docker.py: Debian's
# Docker engine package (dockerd, which the test starts and stops itself), docker-compose
# (Compose v1.29) and debootstrap (the local base images). Installed only where
# we are root with apt-get; elsewhere the tests that need them skip with a reason.
set -u
need=()
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
if [ "$(id -u)" -eq 0 ] && [ "$(uname -s)" = Linux ]; then
  # Only root can run dockerd, so only root needs these.
  command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
  command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
  command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)
fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "system-deps: ${need[*]} not installed and no root apt-get here; those tests will skip"
  # In CI a skipped Redis 7.0 pass (or Docker test) would hide a broken route: fail instead.
  [ -n "${CI:-}" ] && exit 1
  exit 0
fi
echo "system-deps: apt-get install ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq >/dev/null && apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; }; then
  echo "system-deps: apt-get failed; the tests that need ${need[*]} will skip"
  [ -n "${CI:-}" ] && exit 1
fi
exit 0
