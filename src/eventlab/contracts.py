"""Contracts (moved to eventlab.shop.contracts; this keeps the old import path)."""

from eventlab.shop.contracts import *  # noqa: F403
from eventlab.shop.contracts import __all__ as __all__
