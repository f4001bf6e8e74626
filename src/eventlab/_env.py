"""The environment variables the kit reads, all read here (docs/architecture.md lists them).

For a learner or an instructor:

* ``REDIS_URL`` — use this broker instead of starting a managed one.
* ``EVENTLAB_NAMESPACE`` — the key prefix (a workshop learner's name; default ``lab``).
* ``EVENTLAB_WORKSHOP_URL`` — the room broker that holds workshop progress.
* ``EVENTLAB_STATE`` — the state folder of the managed broker (default ``.eventlab/``).
* ``EVENTLAB_SERVER`` — the ``redis-server``/``valkey-server`` binary to run.

Between the kit's own processes (set by a parent, read by the child it starts):
``EVENTLAB_READY_FILE`` (:func:`eventlab.processes.signal_ready`),
``EVENTLAB_SCENARIO_URL`` (scenario workers), ``EVENTLAB_ARG_<n>`` (a secret
argument of :func:`eventlab.processes.spawn`). ``EVENTLAB_BIN`` is set for
JupyterLab's terminals, never read. An empty value counts as unset.
"""

from __future__ import annotations

import os

__all__ = [
    "NAMESPACE",
    "READY_FILE",
    "REDIS_URL",
    "SCENARIO_URL",
    "SERVER",
    "STATE",
    "VARIABLES",
    "WORKSHOP_URL",
    "get",
]

REDIS_URL = "REDIS_URL"
NAMESPACE = "EVENTLAB_NAMESPACE"
WORKSHOP_URL = "EVENTLAB_WORKSHOP_URL"
STATE = "EVENTLAB_STATE"
SERVER = "EVENTLAB_SERVER"
READY_FILE = "EVENTLAB_READY_FILE"
SCENARIO_URL = "EVENTLAB_SCENARIO_URL"

VARIABLES = (REDIS_URL, NAMESPACE, WORKSHOP_URL, STATE, SERVER, READY_FILE, SCENARIO_URL)
"""Every variable :func:`get` may read (a test checks docs/architecture.md names each)."""


def get(name: str) -> str | None:
    """Return the value of variable ``name`` (one of :data:`VARIABLES`), ``None`` if unset or empty.

    Raises:
        KeyError: ``name`` is not one the kit reads (add it to :data:`VARIABLES` and the docs).
    """
    if name not in VARIABLES:
        raise KeyError(f"{name} is not an environment variable eventlab reads")
    return os.environ.get(name) or None
