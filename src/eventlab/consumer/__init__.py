"""The reliable consumer runtime (moved into a package; the next commit splits it by job)."""

from eventlab.consumer._engine import *  # noqa: F403
from eventlab.consumer._engine import __all__ as __all__
