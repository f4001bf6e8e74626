"""What every command module shares: the sub-command registry type and the handler type."""

from __future__ import annotations

import argparse
from collections.abc import Callable

__all__ = ["Handler", "Subcommands"]

Subcommands = argparse._SubParsersAction  # noqa: SLF001 - argparse names no public type for it
"""The ``add_subparsers()`` object each command module's ``register`` adds its commands to."""

Handler = Callable[[argparse.Namespace], int]
"""A command: parsed arguments in, exit status out."""
