"""``python -m eventlab.cli``: the same as the ``eventlab`` command."""

import sys

from eventlab.cli import main

sys.exit(main())
