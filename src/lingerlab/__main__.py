"""``python -m lingerlab audit ...``: the ``lingerlab`` console script (:mod:`lingerlab.cli`)."""

import sys

from .cli import main

sys.exit(main())
