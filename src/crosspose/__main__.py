"""``python -m crosspose``: the same as the ``crosspose`` command."""

import sys

from crosspose.cli import main

sys.exit(main())
