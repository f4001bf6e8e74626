"""Break things on purpose (moved into a package; the next commit splits it by job)."""

from eventlab.faults._proxy_controls import *  # noqa: F403
from eventlab.faults._proxy_controls import Action as Action
from eventlab.faults._proxy_controls import __all__ as __all__
